"""VAC and IntroVAC: loss values by hand, Algorithm 1's update rule, edits, Langevin sampling, a short fit."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from latentlab import VAC, IntroVAC, face_model, fit
from latentlab.data.synthfaces import synthetic_faces
from latentlab.editing.langevin import langevin_conditional_samples

SIZE, CHANNELS, LATENT = 32, (8, 16, 32), 6


def tiny(name="introvac", **kwargs):
    torch.manual_seed(0)
    return face_model(name, image_size=SIZE, channels=CHANNELS, latent_dim=LATENT, **kwargs)


def batch(n=6, num_labels=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, 2, (n,) if num_labels == 1 else (n, num_labels), generator=g)
    return x, y


def params(*modules):
    return [p for m in modules for p in m.parameters()]


def sgd(model):
    """Plain SGD at lr 1, so a step changes each parameter by exactly minus the gradient it used."""
    return {
        "encoder": torch.optim.SGD(params(model.encoder, model.classifier), lr=1.0),
        "decoder": torch.optim.SGD(model.decoder.parameters(), lr=1.0),
    }


# ----------------------------------------------------------------------------- losses


def test_vac_terms_match_eq5_computed_by_hand():
    model, (x, y) = tiny("vac"), batch()
    torch.manual_seed(5)
    terms = model.loss_terms((x, y))
    torch.manual_seed(5)
    q = model.encoder(x)
    z = q.mean + torch.exp(0.5 * q.log_var) * torch.randn_like(q.mean)
    x_r = 1 / (1 + torch.exp(-model.decoder(z)))
    ae = (x_r - x).abs().mean()
    p = torch.sigmoid(z @ model.classifier.weight.T)[:, 0]
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    kl = (0.5 * (q.mean**2 + q.log_var.exp() - 1 - q.log_var)).sum(1).mean() / LATENT
    assert torch.allclose(terms["ae"], ae, atol=1e-6)
    assert torch.allclose(terms["class"], bce, atol=1e-6)
    assert torch.allclose(terms["kl"], kl, atol=1e-6)
    assert torch.allclose(terms["loss"], 100 * ae + 10 * bce + 3 * kl, atol=1e-4)


@pytest.mark.parametrize("fake_in_attribute_mean", [False, True])
def test_introvac_fake_logit_targets_follow_eqs_6_and_7(fake_in_attribute_mean):
    model, (x, y) = tiny(fake_in_attribute_mean=fake_in_attribute_mean), batch()
    torch.manual_seed(3)
    terms = model.introspection_terms(x, y.float()[:, None])
    x_rr, x_g = terms["x_rr"], terms["x_g"]
    fake = lambda images: model.classifier(model.encoder(images).mean)
    # encoder+classifier: decoded images are fake (target 1 on the fake logit)
    assert torch.allclose(terms["ec_rec"], -F.logsigmoid(fake(x_rr)[:, -1]).mean(), atol=1e-6)
    assert torch.allclose(terms["ec_gen"], -F.logsigmoid(fake(x_g)[:, -1]).mean(), atol=1e-6)

    def class_term(logits):
        """Right class and 'real': eq. 6 as printed (sum), or the authors' mean over the k + 1 = 2 columns."""
        p = torch.sigmoid(logits[:, 0])
        attribute = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
        real = -F.logsigmoid(-logits[:, -1]).mean()
        return (attribute + real) / 2 if fake_in_attribute_mean else attribute + real

    # decoder: reconstructions should carry the true class and look real; samples should look real
    gen = model.generator_loss(x_rr, x_g, y.float()[:, None])
    assert torch.allclose(gen["g_rec"], class_term(fake(x_rr)), atol=1e-5)
    assert torch.allclose(gen["g_gen"], -F.logsigmoid(-fake(x_g)[:, -1]).mean(), atol=1e-6)
    assert torch.allclose(gen["generator"], 5 * (gen["g_rec"] + gen["g_gen"]))
    # real images: L_CL by the same rule, on the sampled z
    torch.manual_seed(3)
    vac = model.vac_terms(x, y.float()[:, None])
    assert torch.allclose(vac["class"], class_term(model.classifier(vac["z"])), atol=1e-5)


def test_detach_points_no_encoder_loss_reaches_the_decoder():
    model, (x, y) = tiny(), batch()
    torch.manual_seed(4)
    terms = model.introspection_terms(x, y.float()[:, None])
    decoder = list(model.decoder.parameters())
    ec = model.introspection_weight * (terms["ec_rec"] + terms["ec_gen"])
    assert all(g is None for g in torch.autograd.grad(ec, decoder, retain_graph=True, allow_unused=True))
    # X_rr is G(dt(Z_r)) in value: step 1's reconstruction, before the decoder moves
    torch.manual_seed(4)
    z = model.encoder(x).rsample()
    assert torch.allclose(terms["x_rr"], model.decode({"z": z.detach()}), atol=1e-6)
    # while the introspective terms do train the encoder and the classifier's fake row
    encoder = list(model.encoder.parameters())
    grads = torch.autograd.grad(ec, [*encoder, model.classifier.weight], retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads[:1]) and grads[-1][-1].abs().sum() > 0
    # the decoder's adversarial loss does reach the decoder
    gen = model.generator_loss(terms["x_rr"], terms["x_g"], y.float()[:, None])["generator"]
    assert any(g.abs().sum() > 0 for g in torch.autograd.grad(gen, decoder))


@pytest.mark.parametrize("fake_in_attribute_mean", [False, True])
def test_training_step_is_algorithm_1(fake_in_attribute_mean):
    """Encoder+classifier step on line 9's loss; decoder step on b_AE grad L_AE (kept) + b_G grad L_G at the new E, C.

    The twin follows the algorithm literally, from the networks: X_rr decoded again from dt(Z_r), every
    gradient by autograd.grad; the step must change every parameter by exactly those gradients.
    """
    model, (x, y) = tiny(warmup_epochs=0, fake_in_attribute_mean=fake_in_attribute_mean), batch()
    twin = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(11)
    model.training_step((x, y), sgd(model))
    change = {n: before[n] - p.detach() for n, p in model.named_parameters()}  # = the gradient used

    torch.manual_seed(11)
    yy = y.float()[:, None]
    q = twin.encoder(x)
    z = q.rsample()
    x_r = twin.decode({"z": z})
    vac = 100 * F.l1_loss(x_r, x) + 10 * twin.classification_loss(twin.classifier(z), yy) \
        + 3 * q.kl_standard_normal().mean() / LATENT
    x_rr = twin.decode({"z": z.detach()})  # G(dt(Z_r)), decoded again
    x_g = twin.decode({"z": torch.randn(len(x), LATENT)})
    ec = F.softplus(-twin.fake_logit(x_rr.detach())).mean() + F.softplus(-twin.fake_logit(x_g.detach())).mean()
    loss = vac + 0.01 * ec
    ec_params, dec_params = params(twin.encoder, twin.classifier), list(twin.decoder.parameters())
    grad_ec = torch.autograd.grad(loss, ec_params, retain_graph=True)
    grad_dec_1 = torch.autograd.grad(loss, dec_params, retain_graph=True)
    grad_ae = torch.autograd.grad(100 * F.l1_loss(x_r, x), dec_params, retain_graph=True)
    for a, b in zip(grad_dec_1, grad_ae):  # line 9's loss reaches the decoder through L_AE only
        assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():
        for p, g in zip(ec_params, grad_ec):
            p -= g
    gen = 5 * (twin.classification_loss(twin.classifier(twin.encoder(x_rr).mean), yy)
               + F.softplus(twin.fake_logit(x_g)).mean())
    grad_dec_2 = torch.autograd.grad(gen, dec_params)

    names = [n for n, _ in model.named_parameters()]
    ec_names = [n for n in names if n.startswith(("encoder.", "classifier."))]
    dec_names = [n for n in names if n.startswith("decoder.")]
    for n, g in zip(ec_names, grad_ec):
        assert torch.allclose(change[n], g, atol=1e-5), n
    for n, g1, g2 in zip(dec_names, grad_dec_1, grad_dec_2):
        # SGD at lr 1 moves the encoder far, so these gradients reach hundreds: compare to the largest,
        # since the two computations sum in different orders
        expected = g1 + g2
        assert (change[n] - expected).abs().max() <= 1e-5 * (1 + expected.abs().max()), n
    assert any(g.abs().sum() > 1e-6 for g in grad_dec_2)  # the generator term really moved the decoder


def test_decoder_step_computes_no_encoder_weight_gradients():
    """Step 2 differentiates with respect to theta only: the encoder and classifier, which only pass the
    gradient through, hold exactly step 1's gradients afterwards (none added by step 2)."""
    model, (x, y) = tiny(warmup_epochs=0), batch()
    optimizers = sgd(model)
    seen = {}
    original_update = model.update

    def spy(optimizer, loss, **kwargs):
        if optimizer is optimizers["decoder"]:
            seen["before"] = [p.grad.clone() for p in params(model.encoder, model.classifier)]
        original_update(optimizer, loss, **kwargs)
        if optimizer is optimizers["decoder"]:
            seen["after"] = [p.grad.clone() for p in params(model.encoder, model.classifier)]

    model.update = spy
    model.training_step((x, y), optimizers)
    assert seen["before"] and all(torch.equal(a, b) for a, b in zip(seen["before"], seen["after"]))


def test_warm_up_epochs_train_a_plain_vac():
    model, (x, y) = tiny(warmup_epochs=2), batch()
    twin = copy.deepcopy(model)
    model.on_epoch_start(1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(2)
    terms = model.training_step((x, y), sgd(model))
    assert "generator" not in terms and "ec_rec" not in terms
    torch.manual_seed(2)
    vac = twin.vac_batch_terms((x, y))["loss"]
    grads = torch.autograd.grad(vac, list(twin.parameters()))
    for (n, p), g in zip(model.named_parameters(), grads):
        assert torch.allclose(before[n] - p.detach(), g, atol=1e-5), n
    model.on_epoch_start(2)
    assert "generator" in model.training_step((x, y), sgd(model))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_learning_rate_halves_at_the_papers_epochs():
    model = tiny()
    optimizers = model.configure_optimizers()
    schedulers = model.configure_schedulers(optimizers)
    rates = []
    for _ in range(125):
        rates.append(optimizers["decoder"].param_groups[0]["lr"])
        for s in schedulers.values():
            s.step()
    assert rates[59] == 2e-4 and rates[60] == 1e-4 and rates[90] == 5e-5 and rates[120] == 2.5e-5
    assert optimizers["encoder"].param_groups[0]["weight_decay"] == 1e-5
    assert tiny("vac").configure_schedulers(tiny("vac").configure_optimizers()) == {}  # VAC: no decay


# ----------------------------------------------------------------------------- editing


def test_move_along_w_changes_the_logit_by_delta_times_norm():
    model, (x, _) = tiny("vac", num_labels=2), batch(num_labels=2)
    model.eval()
    with torch.no_grad():
        mu = model.encoder(x).mean
        w = model.classifier.weight
        shifted = mu + torch.tensor([2.0, -1.0]) @ model.directions()
        change = model.attribute_logits(shifted) - model.attribute_logits(mu)
        cos = (w[0] @ w[1]) / (w[0].norm() * w[1].norm())
    expected0 = 2.0 * w[0].norm() - 1.0 * w[0].norm() * cos
    assert torch.allclose(change[:, 0], expected0.expand(len(x)), atol=1e-5)
    assert torch.allclose(model.directions().norm(dim=1), torch.ones(2))


def test_edit_adds_removes_or_keeps_each_attribute():
    model, (x, _) = tiny("vac", num_labels=2), batch(num_labels=2)
    model.eval()
    y = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0], [0, 0], [1, 1]])
    target = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 1], [1, 1], [0, 0]])
    edited = model.edit(x, y, target, delta=3.0)
    expected = model.move(x, 3.0 * (target - y).float())
    assert torch.allclose(edited, expected)
    with torch.no_grad():
        reconstruction = model.decode({"z": model.encoder(x).mean})
    assert torch.allclose(model.edit(x, y, y), reconstruction)  # nothing to change
    with pytest.raises(ValueError, match="one 0/1 column per attribute"):
        model.edit(x, y[:, 0], target)


@pytest.fixture(scope="module")
def trained_eye_model():
    """IntroVAC on 32 px synthetic faces, Eye subset: 3 short epochs (1 of them the VAC warm-up)."""
    faces = synthetic_faces(1024, 400, image_size=SIZE, seed=0)
    x, y = faces.split("Eye", "train")
    torch.manual_seed(0)
    model = face_model("introvac", image_size=SIZE, channels=(16, 32, 64), latent_dim=16, warmup_epochs=1)
    fit(model, (x, y), epochs=3, batch_size=64, seed=0, progress=False)
    return model, faces.split("Eye", "test")


def test_introvac_own_classifier_beats_chance(trained_eye_model):
    model, (x, y) = trained_eye_model
    accuracy = float((model.predict(x) == y).float().mean())
    majority = max(float(y.float().mean()), 1 - float(y.float().mean()))
    assert accuracy > majority + 0.2, (accuracy, majority)


def test_automatic_delta_stops_once_the_model_is_confident(trained_eye_model):
    model, (x, y) = trained_eye_model
    x, y = x[:40], y[:40]
    target = 1 - y
    edited = model.edit(x, y, target, delta="auto", confidence=0.8, max_delta=12.0)
    p = model.attribute_probabilities(edited)[:, 0]
    confident = torch.where(target.bool(), p, 1 - p) >= 0.8
    assert confident.float().mean() > 0.5  # most images reach the target before max_delta
    fixed = model.edit(x, y, target, delta=12.0)
    reached = ~torch.isclose(edited, fixed).flatten(1).all(1)
    assert bool(confident[reached].all())  # every image that stopped early did so because it was confident


# ----------------------------------------------------------------------------- Langevin


def test_langevin_chains_sample_p_z_given_y():
    """With w = 3 e_0, p(z_0 | y=1) is proportional to sigmoid(3 z_0) N(z_0; 0, 1): compare its mean by quadrature."""
    model = tiny("vac")
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.weight[0, 0] = 3.0
    grid = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    density = torch.sigmoid(3 * grid) * torch.exp(-(grid**2) / 2)
    exact_mean = float((grid * density).sum() / density.sum())
    for label, sign in ((1, 1.0), (0, -1.0)):
        samples = langevin_conditional_samples(model, [label], num_chains=3000, steps=400, step_size=0.02, reject=False)
        z = samples.z
        assert abs(float(z[:, 0].mean()) - sign * exact_mean) < 0.06
        assert abs(float(z[:, 1:].std()) - 1.0) < 0.05 and abs(float(z[:, 1:].mean())) < 0.05  # the rest stays N(0, 1)
        assert samples.images.shape == (3000, 3, SIZE, SIZE) and bool(samples.accepted.all())


def test_langevin_rejects_samples_the_model_misreads(monkeypatch):
    model = tiny("vac")
    monkeypatch.setattr(model, "attribute_probabilities", lambda images: torch.linspace(0, 1, len(images))[:, None])
    samples = langevin_conditional_samples(model, [1], num_chains=11, steps=3)
    assert samples.accepted.tolist() == [False] * 6 + [True] * 5
    assert len(samples.accepted_images) == 5 and math.isclose(samples.acceptance_rate, 5 / 11, rel_tol=1e-6)
    with pytest.raises(ValueError, match="one 0/1 column per attribute"):
        langevin_conditional_samples(model, [1, 0], num_chains=2, steps=1)


# ----------------------------------------------------------------------------- inputs and plumbing


def test_bad_arguments_are_refused_with_the_fix():
    from latentlab.nets.faces import face_networks

    encoder, decoder = face_networks(SIZE, LATENT, channels=CHANNELS, encoder_condition_dim=2)
    with pytest.raises(ValueError, match="condition_dim=0"):
        IntroVAC(encoder, decoder)
    encoder, decoder = face_networks(SIZE, LATENT, channels=CHANNELS)
    with pytest.raises(ValueError, match="non-negative"):
        IntroVAC(encoder, decoder, generator_weight=-1)
    with pytest.raises(ValueError, match="attribute_names"):
        VAC(encoder, decoder, num_labels=2, attribute_names=["Eyeglasses"])
    with pytest.raises(ValueError, match="num_classes must be 2"):
        face_model("introvac", image_size=SIZE, num_classes=3)
    with pytest.raises(ValueError, match="pass batches"):
        tiny().loss_terms((batch()[0],))


def test_introvac_resumes_with_its_schedule(tmp_path):
    x, y = batch(n=16)
    model = tiny(warmup_epochs=1, lr_milestones=(1,))
    fit(model, (x, y), epochs=1, batch_size=8, checkpoint_dir=tmp_path, progress=False)
    resumed = tiny(warmup_epochs=1, lr_milestones=(1,))
    history = fit(resumed, (x, y), epochs=2, batch_size=8, checkpoint_dir=tmp_path, progress=False)
    assert resumed.epoch == 1 and len(history["generator"]) == 1 and len(history["loss"]) == 2
    state = torch.load(max(tmp_path.glob("*.pt")), weights_only=True)
    assert state["schedulers"]["decoder"]["last_epoch"] == 2

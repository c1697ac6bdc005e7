"""The comparison machinery of the face-editing chapter: resumable training by name, one scored row per model."""

from __future__ import annotations

import math

import pytest
import torch

from latentlab import IndependentJudge
from latentlab.config import Profile
from latentlab.data.synthfaces import synthetic_faces
from latentlab.chapters.face_editing import chapter_run, checkpoint_dir, editing_scores, train_face_model, training_table

NETS = {"channels": (8, 16, 32), "latent_dim": 8}


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(96, 40, image_size=32, seed=3)


def test_training_writes_checkpoints_under_the_data_root_and_a_second_call_loads_them(faces, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    model, report = train_face_model("vac", faces, "Smiling", epochs=1, batch_size=32, tag="t", **NETS)
    directory = checkpoint_dir("vac", "Smiling", faces, "t")
    assert directory.parent == tmp_path / "checkpoints" and any(directory.glob("step-*.pt"))
    assert not report.resumed and "trained" in str(report) and not model.training
    assert (report.model, report.subset, report.images, report.epochs) == ("vac", "Smiling", len(faces.split("Smiling", "train")[0]), 1)
    assert tmp_path.parent / report.checkpoints == directory  # shown relative to the folder holding the data root
    again, report_again = train_face_model("vac", faces, "Smiling", epochs=1, batch_size=32, tag="t", **NETS)
    assert report_again.resumed and "resumed/loaded" in str(report_again)
    table = training_table([report, report_again])
    assert table.count("\n| `vac` | Smiling |") == 2 and "trained in" in table and "loaded (" in table
    assert f"`{tmp_path.name}/checkpoints/`" in table
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="one-attribute subset"):
        train_face_model("csvae", faces, "EyeFacial", epochs=1, **NETS)


def test_editing_scores_fill_every_column_on_synthetic_faces(faces, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    judge = IndependentJudge.for_faces(faces, epochs=1, channels=(8, 16, 32))
    for name in ("introvac", "csvae"):
        model, _ = train_face_model(name, faces, "Smiling", epochs=1, batch_size=32, **NETS)
        row = editing_scores(model, faces, "Smiling", judge, num_test=30)
        for column in ("recon MSE", "FID recon", "edit add", "edit remove", "identity", "locality"):
            assert math.isfinite(row[column]), (name, column)
        assert 0 <= row["edit add"] <= 1 and 0 <= row["edit remove"] <= 1 and 0 < row["locality"] <= 1
        assert "judge features" in row["FID features"]
        # CSVAE has no classifier of its own: its accuracy is missing, not invented
        assert math.isnan(row["own-head acc"]) == (name == "csvae")


def test_chapter_run_gives_both_face_chapters_the_same_data_sizes_judge_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    run = chapter_run(Profile("smoke", "test"))
    assert run.synthetic and "profile smoke runs on synthetic faces" in run.why
    assert (len(run.faces.x_train), len(run.faces.x_test), run.faces.image_size) == (400, 200, 32)
    assert run.tag == "smoke-1ep" and run.nets == {"channels": (8, 16, 32), "latent_dim": 16}
    model, report = run.train("vac", "EyeFacial")
    assert model.attribute_names == ["Eyeglasses", "Facial_Hair"]  # named for sliders and edits
    assert any(checkpoint_dir("vac", "EyeFacial", run.faces, "smoke-1ep").glob("step-*.pt"))
    again, report = chapter_run(Profile("smoke", "test")).train("vac", "EyeFacial")
    assert report.resumed and report.subset == "EyeFacial"
    judge = run.judge()
    assert (tmp_path / "judges" / "editing-synthetic-smoke-32px.pt").is_file()
    assert judge.trained_on == run.faces.describe()


def test_chapter_run_says_why_a_gpu_profile_fell_back_to_synthetic_faces(monkeypatch):
    import latentlab.data
    import latentlab.data.synthfaces

    def missing(*args, **kwargs):
        raise latentlab.data.DatasetNotFoundError("CelebA was not found in data/celeba\nplace it there")

    asked = {}
    monkeypatch.setattr(latentlab.data, "load_celeba_in_memory", missing)
    monkeypatch.setattr(latentlab.data.synthfaces, "synthetic_faces",
                        lambda *size, **kwargs: asked.update(size=size, **kwargs) or synthetic_faces(40, 20, image_size=32))
    run = chapter_run(Profile("gpu", "test"))
    assert run.why == "Synthetic faces, not CelebA: CelebA is not in data/celeba (CelebA was not found in data/celeba)."
    assert asked == {"size": (20_000, 2000), "image_size": 32, "seed": 0} and run.tag == "gpu-40ep"


def test_cpu_profile_on_celeba_trains_every_model_for_the_same_number_of_steps(tmp_path, monkeypatch):
    """With CelebA present the cpu profile runs on it (64 px, narrow nets), each model for ``steps`` optimizer
    steps: IntroVAC's subsets are balanced as its code balances them, so they get more epochs; a ``variant``
    gets checkpoints and a training-table label of its own."""
    import dataclasses

    import latentlab.data
    from latentlab.data.faces import balance_indices

    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    photos = synthetic_faces(120, 30, image_size=32, seed=1)
    rare = photos.attributes_train.clone()
    rare[:, photos.attribute_names.index("Eyeglasses")] = (torch.arange(120) < 20).long()  # glasses as rare as on CelebA
    photos = dataclasses.replace(photos, attributes_train=rare, identity_train=None, identity_test=None)
    asked = {}
    monkeypatch.setattr(latentlab.data, "load_celeba_in_memory",
                        lambda subset, image_size, limit: asked.update(size=image_size) or photos)
    run = chapter_run(Profile("cpu", "test"))
    assert asked == {"size": 64} and not run.synthetic and run.steps == 500 and "CelebA photographs" in run.why
    assert run.nets == {"channels": (16, 32, 64, 128), "latent_dim": 64} and run.num_test == 30

    run = dataclasses.replace(run, nets=NETS, steps=6, batch_size=16)
    glasses = photos.labels("Eye", "train")
    eye_images = len(balance_indices(glasses, 2))  # every positive, 2 negatives per positive
    assert eye_images < 120 and run.training_images("Eye") == eye_images
    assert run.training_images(["Eyeglasses"]) == 120  # a plain attribute list is not balanced
    assert run.epochs_for(["Smiling"]) == 1 and run.epochs_for("Eye") == -(-6 // -(-eye_images // 16))
    assert run.warmup_epochs("Eye") == run.epochs_for("Eye") // 4

    model, report = run.train("introvac", "Eye")
    assert (report.images, report.epochs) == (eye_images, run.epochs_for("Eye"))
    assert model.warmup_epochs == run.warmup_epochs("Eye")
    other, other_report = run.train("introvac", "Eye", variant="code-mean", fake_in_attribute_mean=True)
    assert other.fake_in_attribute_mean and other_report.model == "introvac (code-mean)" and not other_report.resumed
    assert checkpoint_dir("introvac", "Eye", photos, f"{run.tag}-code-mean") != checkpoint_dir("introvac", "Eye", photos, run.tag)

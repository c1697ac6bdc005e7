"""The side-by-side benchmark against the official IntroVAC code: skipped without a checkout, refuses a wrong
path, and runs a checkout's own step (here a stand-in checkout written by the test, in the official layout)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from latentlab.commands import cli

MODELS = '''
import torch
from latentlab.nets.faces import ResidualDecoder, ResidualEncoder


class Encoder(torch.nn.Module):  # the official signature: Encoder(opt) -> (mu, logvar)
    def __init__(self, opt):
        super().__init__()
        self.net = ResidualEncoder(opt["image_size"], opt["dim"], opt["channels"])

    def forward(self, x):
        q = self.net(x)
        return q.mean, q.log_var


class Decoder(torch.nn.Module):
    def __init__(self, opt):
        super().__init__()
        self.net = ResidualDecoder(opt["image_size"], opt["dim"], opt["channels"])

    def forward(self, z):
        return torch.sigmoid(self.net(z))


def log_reg(opt):
    return torch.nn.Linear(opt["dim"], opt["num_classes"] - 1, bias=False)
'''

PROGRAM = '''
import torch
from torchnet.meter import AverageValueMeter  # logging only: a stand-in when torchnet is not installed
import introvac.modules.models
torch.autograd.set_detect_anomaly(True)
calls = []


def step_intro(ctx, x, y):
    calls.append(tuple(y.shape))
    mu, logvar = ctx.encoder(x)
    loss = (ctx.decoder(mu) - x).abs().mean() + ctx.classifier(mu).pow(2).mean()
    for opt in (ctx.optimizer_enc, ctx.optimizer_dec, ctx.optimizer_class):
        opt.zero_grad()
    loss.backward()
    for opt in (ctx.optimizer_enc, ctx.optimizer_dec, ctx.optimizer_class):
        opt.step()
'''


def test_without_a_checkout_the_benchmark_says_how_to_get_one(capsys):
    cli.main(["bench-introvac"])
    out = capsys.readouterr().out
    assert "skipped" in out and "git clone https://github.com/marcomgg/IntroVAC" in out and "--official" in out


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"not a checkout of the official IntroVAC code \(no introvac/program.py\)"):
        cli.main(["bench-introvac", "--official", str(tmp_path)])


def test_the_checkouts_own_step_is_timed_against_latentlabs(tmp_path, capsys, monkeypatch):
    package = tmp_path / "IntroVAC" / "introvac"
    (package / "modules").mkdir(parents=True)
    for path, text in {package / "__init__.py": "", package / "modules" / "__init__.py": "",
                       package / "modules" / "models.py": MODELS, package / "program.py": PROGRAM}.items():
        path.write_text(textwrap.dedent(text))
    for name in [n for n in sys.modules if n == "introvac" or n.startswith(("introvac.", "torchnet"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(torch.autograd, "set_detect_anomaly", torch.autograd.set_detect_anomaly)  # restored after
    cli.main(["bench-introvac", "--official", str(tmp_path / "IntroVAC"), "--sizes", "64", "--batch-sizes", "2",
              "--rounds", "2", "--warmup", "1", "--latent-dim", "8", "--latentlab", "default", "nchw"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 64 | 2 |")]
    assert [row.split(" | ")[2] for row in rows] == ["float32, channels_last", "float32, NCHW"]
    assert all(row.count("|") == 8 and "x |" in row and "(both)" in row for row in rows)
    assert "after 1 untimed steps each" in out and "freed memory kept in the process" in out
    assert sys.modules["introvac.program"].calls == [(2, 1)] * 3  # one warm-up step, two timed; labels (N, 1)
    assert not torch.is_anomaly_enabled()  # the program turned it on at import; the benchmark turned it off


def test_the_bf16_row_is_left_out_on_a_cpu_without_native_bf16(tmp_path, capsys, monkeypatch):
    from latentlab.commands import bench_introvac

    monkeypatch.setattr(bench_introvac, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(SystemExit, match="no latentlab setting left to time; add --latentlab default"):
        cli.main(["bench-introvac", "--official", str(tmp_path), "--latentlab", "bf16"])
    assert "no bf16 row: this CPU has no native bf16" in capsys.readouterr().out

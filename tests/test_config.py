import pytest
import torch

from latentlab import config


def test_profile_from_environment_and_default():
    assert config.parse_profile("smoke").name == "smoke"
    assert config.parse_profile(" GPU ").name == "gpu"
    default = config.parse_profile(None)
    assert default.name == ("gpu" if torch.cuda.is_available() else "cpu")
    assert "default" in default.source


def test_unknown_profile_is_explained():
    with pytest.raises(ValueError, match="LATENTLAB_PROFILE='laptop' is not a profile.*smoke, cpu, gpu"):
        config.parse_profile("laptop")


def test_choose_picks_the_profile_value():
    p = config.parse_profile("cpu")
    assert p.choose(smoke=1, cpu=2, gpu=3) == 2


def test_the_test_suite_runs_in_the_smoke_profile():
    # make test sets LATENTLAB_PROFILE=smoke; the chapters rely on it being read once
    import os

    if os.environ.get("LATENTLAB_PROFILE") == "smoke":
        assert config.profile().name == "smoke"


def test_device_override(monkeypatch):
    monkeypatch.setenv("LATENTLAB_DEVICE", "cpu")
    assert config.default_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("LATENTLAB_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.default_device()


def test_seed_everything_repeats_and_validates():
    config.seed_everything(3)
    a = torch.randn(3)
    config.seed_everything(3)
    assert torch.equal(a, torch.randn(3))
    with pytest.raises(ValueError, match="non-negative int"):
        config.seed_everything(-1)


def test_describe_run_names_profile_device_and_data():
    line = config.describe_run("toy data", torch.device("cpu"))
    assert "profile:" in line and "device: cpu" in line and "data: toy data" in line


def test_launch_note_says_which_run_made_the_outputs_and_how_to_run_the_chapter():
    note = config.launch_note("book/elbo.ipynb", "toy data", torch.device("cpu"), extra="Needs no data.")
    text = str(note)
    assert config.describe_run("toy data", torch.device("cpu")) in text
    assert "jupyter lab book/elbo.ipynb" in text and "Needs no data." in text
    page = note._repr_html_()
    assert 'class="admonition note latentlab-launch-note"' in page
    assert "<code>LATENTLAB_PROFILE=cpu .venv/bin/jupyter lab book/elbo.ipynb</code>" in page
    escaped = config.launch_note("book/x.ipynb", "images <64 px>")._repr_html_()
    assert "images &lt;64 px&gt;" in escaped and "<64 px>" not in escaped

"""`python -m toyenv.experiments verify`: a rebuilt study against its shipped file, with no tolerance."""
import json
import sys
import types

import pytest
import torch

from toyenv.experiments import __main__ as V


def _fake_study(monkeypatch, tmp_path, numbers, files=("fake.json",)):
    """A study module whose main writes `numbers` (and a machine record) to --out, shipped as {"x": [1.0, 2.0]}."""
    def main(argv):
        out = argv[argv.index("--out") + 1]
        with open(out, "w") as f:
            json.dump({"x": numbers, "seconds": 9.9, "machine": V.machine()}, f)

    module = types.ModuleType("toyenv.experiments.fake")
    module.main = main
    monkeypatch.setitem(sys.modules, "toyenv.experiments.fake", module)
    monkeypatch.setitem(V.STUDIES, "fake", files)
    monkeypatch.setattr(V.tempfile, "gettempdir", lambda: str(tmp_path))
    shipped = tmp_path / "data"
    shipped.mkdir(exist_ok=True)
    (shipped / files[0]).write_text(json.dumps({"x": [1.0, 2.0], "seconds": 1.0, "machine": V.machine()}))
    return shipped


def test_the_same_numbers_are_identical_and_wall_times_do_not_count(monkeypatch, tmp_path, capsys):
    shipped = _fake_study(monkeypatch, tmp_path, [1.0, 2.0])
    assert V.verify("fake", shipped) is True
    out = capsys.readouterr().out
    assert "fake.json: identical (2 numbers" in out
    assert (tmp_path / "toyenv-verify" / "fake" / "fake.json").is_file()  # kept for inspection


def test_one_last_bit_is_a_difference(monkeypatch, tmp_path, capsys):
    shipped = _fake_study(monkeypatch, tmp_path, [1.0, 2.0 + 2 ** -51])
    assert V.verify("fake", shipped) is False
    assert "fake.json: different" in capsys.readouterr().out


def test_weights_are_compared_tensor_by_tensor(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"state_dict": {"w": torch.ones(3), "v": torch.zeros(2)}}, a)
    torch.save({"state_dict": {"w": torch.ones(3), "v": torch.zeros(2)}}, b)
    assert V._weights_verdict(a, b) == (True, "b.pt: identical (2 tensors, every weight equal)")
    torch.save({"state_dict": {"w": torch.tensor([1.0, 1.0, 1.5]), "v": torch.zeros(2)}}, b)
    same, line = V._weights_verdict(a, b)
    assert not same and "1/2 tensors differ, the largest difference 0.5 in w" in line


def test_an_unknown_study_is_refused(capsys):
    with pytest.raises(SystemExit):
        V.main(["verify", "nope"])
    assert "unknown study nope" in capsys.readouterr().err

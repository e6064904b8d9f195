"""Bad data, config and run-directory input (issue 13, data/config/run half): exit code 2, one message naming
the file or key and what is valid, no traceback, no leftover files; and data files never run code."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import pytest

from tests.datasets import interrupt_after, run_cli, write_cifar10
from tests.test_bad_input import config, fails, lut_dir  # noqa: F401  (fixtures)


class Payload:
    """Unpickling this creates ``marker``: what a crafted data file or checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps({b"data": Payload(marker), b"labels": [0]})


# ----------------------------------------------------------------------------- §2 data files never run code


@pytest.mark.parametrize("layout", ["extracted", "archive"])
def test_cifar_payload_never_runs(capsys, tmp_path, config, layout):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    write_cifar10(root, per_batch=4, extracted=layout == "extracted")
    if layout == "extracted":
        (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(planted_pickle(marker))
    else:
        archive = root / "cifar-10-python.tar.gz"
        with tarfile.open(archive) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        members["cifar-10-batches-py/data_batch_1"] = planted_pickle(marker)
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataflow = {"name": "cifar10", "root": str(root), "batch_size": 2, "verify_md5": False}
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow=dataflow))
    assert not marker.exists()
    assert "data_batch_1" in msg and "refused to load posix.mkdir" in msg and "numpy arrays" in msg
    # with the checksum on (the default) the file is refused before it is even opened
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow={**dataflow, "verify_md5": True}))
    assert not marker.exists()
    assert "MD5" in msg and "is not the published" in msg and "verify_md5: false" in msg


# ----------------------------------------------------------------------------- §3, §5 config values


@pytest.mark.parametrize("value", ["-1", str(2**63 + 1), "true", "1.5"])
def test_seed_outside_what_numpy_accepts(capsys, tmp_path, config, value):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", f"seed={value}")
    assert f"--set seed={value}" in msg and "key 'seed'" in msg and "an integer >= 0 and <= 4294967295" in msg


@pytest.mark.parametrize("name", ["a/b", "../../escaped", "..", ".", "a\\b", "' lead'", "x" * 201])
def test_run_name_must_be_a_plain_name(capsys, tmp_path, config, name):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", f"output.name={name}")
    assert "key 'output.name'" in msg and "must be a plain file name" in msg and "output.dir" in msg
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("item, expected", [
    ("dataflow.batch_size=true", "expected an integer > 0"),
    ("supernet.optimizer.lr=.inf", "finite number"),
    ("supernet.optimizer.weight_decay=.inf", "finite number"),
    ("final.grad_clip=.nan", "finite number"),
    ("constraint.max=.inf", "finite number"),
    ("supernet.epochs='3'", "expected an integer > 0"),
    ("logging.progress=1", "expected true or false"),
])
def test_no_silent_coercion_or_infinity(capsys, tmp_path, config, item, expected):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", item)
    assert f"--set {item}" in msg and f"key '{item.split('=')[0]}'" in msg and expected in msg, msg


def test_numbers_with_exponent_still_read_as_numbers(tmp_path, config):
    from osnas.config import load_config

    cfg = load_config(config(), ["constraint.max=1e6", "supernet.optimizer.lr=5e-2"])
    assert cfg.constraint.max == 1e6 and cfg.supernet.optimizer.lr == 0.05


def test_duplicate_yaml_key_names_both_lines(capsys, tmp_path, config):
    path = config()
    path.write_text(path.read_text() + "seed: 3\n")
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("seed:"))
    last = len(path.read_text().splitlines())
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and f"key 'seed' is given twice, on line {first} and line {last}" in msg


def test_deeply_nested_config_is_refused(capsys, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("seed: " + "[" * 20000 + "]" * 20000 + "\n")
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and "nested more than 50 levels deep" in msg


def test_yaml_alias_bomb_is_refused_quickly(capsys, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    lines.append("seed: *a7")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 2000
    msg = fails(capsys, tmp_path, "config", path)
    assert str(path) in msg and "expands to more than 100000 values" in msg


def test_a_long_value_is_shortened_in_messages(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "config", config(), "--set", "seed=[" + ", ".join(["1"] * 5000) + "]")
    assert "key 'seed'" in msg and "..." in msg and len(msg) < 1500


@pytest.mark.parametrize("sets, key, valid", [
    (("dataflow.test_fraction=0.99", "dataflow.val_fraction=0.99"), "dataflow.val_fraction=0.99",
     "splits 17 samples into 0 and 17"),
    (("dataflow.test_fraction=0.001",), "dataflow.test_fraction=0.001", "valid: a value between 0.005565 and 0.9944"),
])
def test_split_fractions_that_leave_a_split_empty(capsys, tmp_path, config, sets, key, valid):
    args = [a for item in sets for a in ("--set", item)]
    msg = fails(capsys, tmp_path, "search", "--config", config(), *args)
    assert key in msg and valid in msg and "each side needs at least" in msg


# ----------------------------------------------------------------------------- runs on disk: shared fixtures


class _NoCapture:
    """Stands in for capsys in module-scoped fixtures (their output is not inspected)."""

    @staticmethod
    def readouterr():
        return type("Captured", (), {"out": "", "err": ""})()


def search_config(root: Path, lut_dir: Path, **sections) -> Path:
    from tests.small_config import small_config, write_config

    return write_config(root / "c.yaml", small_config(root, lut_dir, **sections))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, lut_dir) -> Path:
    """A finished search run (supernet.pt, architecture.json, model.pt, results.json, log.txt)."""
    root = tmp_path_factory.mktemp("finished")
    code, _, err = run_cli(_NoCapture, "search", "--config", str(search_config(root, lut_dir)), "--quiet")
    assert code == 0, err
    (run,) = (root / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, lut_dir) -> Path:
    """A search run stopped after its first supernet epoch (supernet_last.pt holds epoch 0 of 2)."""
    from osnas.run_dir import RunDir

    root = tmp_path_factory.mktemp("interrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunDir, "save_checkpoint", interrupt_after("supernet_last.pt"))
        code, _, err = run_cli(_NoCapture, "search", "--config",
                               str(search_config(root, lut_dir, supernet={"epochs": 2})), "--quiet")
    assert code == 130, err
    (run,) = (root / "runs").iterdir()
    return run


def copy_run(run: Path, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    import shutil

    shutil.copytree(run, dest)
    for name in drop:
        (dest / name).unlink(missing_ok=True)
    return dest


def refused(capsys, *args) -> str:
    """Exit code 2, one message, no traceback; the message on one line."""
    code, out, err = run_cli(capsys, *map(str, args))
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "internal error" not in err and err.count("error:") == 1, err
    return " ".join(err[err.index("error:"):].split())


def planted_checkpoint(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": Payload(marker)}, path)
    return path


# ----------------------------------------------------------------------------- §2 checkpoints never run code


FINISHED_FILES = ("results.json", "model.pt", "supernet.pt", "architecture.json")


@pytest.mark.parametrize("kind, keep", [
    ("supernet.pt", ()), ("supernet_last.pt", ()), ("search_state.pt", ("supernet.pt",)),
    ("final_last.pt", ("architecture.json",)), ("model.pt", ("architecture.json",)),
])
def test_payload_in_a_resume_checkpoint_never_runs(capsys, tmp_path, finished, kind, keep):
    marker = tmp_path / "pwned"
    run = copy_run(finished, tmp_path / "run", drop=tuple(f for f in FINISHED_FILES if f not in keep))
    planted_checkpoint(run / kind, marker)
    msg = refused(capsys, "search", "--resume", run)
    assert not marker.exists()
    assert f"checkpoint {run / kind} is corrupt or not an osnas checkpoint" in msg and "weights_only=True" in msg


@pytest.mark.parametrize("command", ["supernet", "evaluate"])
def test_payload_given_as_supernet_or_model_never_runs(capsys, tmp_path, config, command):
    marker = tmp_path / "pwned"
    planted = planted_checkpoint(tmp_path / "given.pt", marker)
    args = (("search", "--config", config(), "--supernet", planted) if command == "supernet"
            else ("evaluate", "--config", config(), "--checkpoint", planted))
    msg = fails(capsys, tmp_path, *args)
    assert not marker.exists() and "not an osnas checkpoint" in msg and "weights_only=True" in msg


# ----------------------------------------------------------------------------- §3 damaged or foreign checkpoints


def damage(state: dict, how: str) -> None:
    import torch

    if how == "foreign":  # another space's supernet: its tensors have other shapes
        key = next(iter(state["model"]))
        state["model"][key] = torch.zeros(3, 3)
    elif how == "epoch_text":
        state["epoch"] = "0"
    elif how == "epoch_beyond":
        state["epoch"] = 7
    elif how == "rng":
        state["rng"] = {"python": None}
    elif how == "updater_empty":
        state["updater"] = {}
    elif how == "updater_wrong":
        state["updater"] = {"optimizer": {"state": {}, "param_groups": []}}
    elif how == "seconds":
        state["seconds"] = {"supernet": "fast"}


DAMAGES = [
    ("foreign", "size mismatch"), ("epoch_text", "'epoch' must be an integer in 0..1"),
    ("epoch_beyond", "'epoch' must be an integer in 0..1, got 7"), ("rng", "'rng' must hold"),
    ("updater_empty", "'model' or 'updater' entry is empty"), ("updater_wrong", "different number of parameter groups"),
    ("seconds", "'seconds' must map phases to numbers"),
]


@pytest.mark.parametrize("how, why", [DAMAGES[0], DAMAGES[1], DAMAGES[4]])
def test_damaged_or_foreign_resume_checkpoint(capsys, tmp_path, interrupted, how, why):
    from osnas.run_dir import atomic_torch_save, load_checkpoint

    run = copy_run(interrupted, tmp_path / "run")
    state = load_checkpoint(run / "supernet_last.pt")
    damage(state, how)
    atomic_torch_save(run / "supernet_last.pt", state)
    msg = refused(capsys, "search", "--resume", run)
    assert f"checkpoint {run / 'supernet_last.pt'} does not match this run" in msg and why in msg
    assert "delete it to start the phase again" in msg and f"osnas search --resume {run}" in msg
    assert not (run / "results.json").exists() and not (run / "supernet.pt").exists()


@pytest.mark.parametrize("how, why", DAMAGES)
def test_every_damage_is_named_when_restoring(tmp_path, interrupted, how, why):
    """The supernet phase's own resume (without a CLI run and its setup each time) names every damage."""
    from osnas.agent import MainAgent
    from osnas.config import read_yaml, validate_config
    from osnas.errors import OsnasError
    from osnas.pipeline.supernet import SupernetPhase
    from osnas.run_dir import RunDir, load_checkpoint

    run = RunDir.open(copy_run(interrupted, tmp_path / "run"))
    state = load_checkpoint(run.file("supernet_last.pt"))
    damage(state, how)
    run.save_checkpoint("supernet_last.pt", state)
    agent = MainAgent(validate_config(read_yaml(run.file("config.yaml"))), quiet=True)
    phase = SupernetPhase(agent.context(run))
    phase.updater = phase.build_updater(list(phase.model.parameters()))
    with pytest.raises(OsnasError) as info:
        phase.resume(("strategy",))
    message = " ".join(str(info.value).split())
    assert "supernet_last.pt does not match this run" in message and why in message, message


# ----------------------------------------------------------------------------- §4 --supernet before the run dir


@pytest.mark.parametrize("given, expected", [
    ("missing", "checkpoint not found"), ("garbage", "is corrupt or not an osnas checkpoint"),
    ("directory", "is a directory; --supernet takes the supernet.pt"),
    ("model", "is a trained child network (model.pt, for osnas evaluate)"),
    ("other_space", "was trained on a different search space definition"),
    ("other_shapes", "does not fit this config's supernet (Error(s) in loading state_dict"),
])
def test_bad_supernet_is_refused_before_the_run_directory(capsys, tmp_path, config, finished, given, expected):
    import torch

    path = tmp_path / "given.pt"
    if given == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif given == "directory":
        path = finished
    elif given == "model":
        path = finished / "model.pt"
    elif given in ("other_space", "other_shapes"):
        state = torch.load(finished / "supernet.pt", weights_only=True)
        if given == "other_shapes":  # the right space's fingerprint, another space's tensors
            key = next(iter(state["model"]))
            state["model"][key] = torch.zeros(3, 3)
        else:
            state["space_hash"] = "0" * 16
        torch.save(state, path)
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--supernet", path)
    assert expected in msg, msg


# ----------------------------------------------------------------------------- §4 finished runs, totals, stale files, log


def test_resume_of_a_finished_run_changes_nothing(capsys, tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()}
    code, out, err = run_cli(capsys, "search", "--resume", str(run))
    assert code == 0, err
    assert "is finished (results.json is there); nothing to resume, nothing changed" in " ".join(out.split())
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir()} == before


def test_resumed_total_is_the_sum_over_processes(capsys, tmp_path, interrupted):
    import time

    from osnas.run_dir import atomic_torch_save, load_checkpoint

    run = copy_run(interrupted, tmp_path / "run")
    state = load_checkpoint(run / "supernet_last.pt")
    earlier = state["seconds"]["total"]
    assert earlier > 0
    state["seconds"]["total"] = earlier + 1000.0  # as if the first process had run 1000 s longer
    atomic_torch_save(run / "supernet_last.pt", state)
    start = time.perf_counter()
    code, _, err = run_cli(capsys, "search", "--resume", str(run), "--quiet")
    this_process = time.perf_counter() - start
    assert code == 0, err
    total = __import__("json").loads((run / "results.json").read_text())["seconds"]["total"]
    assert earlier + 1000.0 < total <= earlier + 1000.0 + this_process + 0.01


def test_stale_final_last_is_removed_when_model_exists(capsys, tmp_path, finished):
    import shutil

    run = copy_run(finished, tmp_path / "run", drop=("results.json",))
    shutil.copy(run / "model.pt", run / "final_last.pt")  # a kill between writing model.pt and deleting this
    code, _, err = run_cli(capsys, "search", "--resume", str(run), "--quiet")
    assert code == 0, err
    log = (run / "log.txt").read_text()
    assert not (run / "final_last.pt").exists() and "resuming after epoch" not in log
    assert "removed per-epoch checkpoints of finished phases: final_last.pt" in log
    assert (run / "results.json").is_file()


def test_log_holds_what_the_terminal_showed(finished):
    log = (finished / "log.txt").read_text()
    assert "lookup table:" in log and "supernet: epoch 1, loss" in log and "final: epoch 1, loss" in log
    assert "search: " in log and "results:" in log and "test" in log
    assert "\r" not in log and "━" not in log  # no progress-bar redraws


# ----------------------------------------------------------------------------- §3, §4 image folders


def image_folders(root: Path, names: dict[str, int], broken: bool = False) -> Path:
    from tests.datasets import write_class_folders

    write_class_folders(root / "train", names)
    write_class_folders(root / "val", {name: 2 for name in names})
    if broken:
        for image in root.rglob("*.jpg"):
            image.write_bytes(b"not a JPEG")
    return root


NON_ASCII = {"çat": 6, "狗": 6, "n03": 6}


def test_non_ascii_class_and_file_names(capsys, tmp_path, config):
    root = image_folders(tmp_path / "images", NON_ASCII)
    (root / "train" / "n03" / "n03_0001.jpg").rename(root / "train" / "n03" / "ünïcödé.jpg")
    dataflow = {"name": "imagenet", "root": str(root), "input_size": 16, "batch_size": 4, "num_workers": 0,
                "val_fraction": 0.34}
    code, out, err = run_cli(capsys, "data", "check", "--config", str(config(dataflow=dataflow)), "--batches", "9")
    assert code == 0, err
    assert "çat" in out and "狗" in out and "skipped" in out
    # a search builds the same dataflow and loaders (its run is not repeated here: a new lookup table costs ~10 s)


def test_folder_with_no_decodable_image_fails(capsys, tmp_path, config):
    root = image_folders(tmp_path / "images", {"a": 4, "b": 4}, broken=True)
    dataflow = {"name": "imagenet", "root": str(root), "input_size": 16, "batch_size": 2, "num_workers": 0,
                "val_fraction": 0.5}
    msg = fails(capsys, tmp_path, "data", "check", "--config", config(dataflow=dataflow))
    assert f"none of the 4 images read from {root / 'train'} could be decoded" in msg and "not a JPEG" not in msg
    assert "replace or remove the broken files" in msg
    code, out, err = run_cli(capsys, "search", "--config", str(config(dataflow=dataflow)), "--quiet")
    assert code == 2 and "could be decoded" in err and "Traceback" not in err


def test_a_few_broken_images_warn_with_counts(tmp_path, caplog):
    import logging

    import torch

    from osnas.dataflows.folder import CenterCrop, FolderLoader, ImageDataset, fixed, scan_class_folders

    root = image_folders(tmp_path / "images", {"a": 10, "b": 10})
    (root / "train" / "a" / "a_0001.jpg").write_bytes(b"broken")
    _, rel, labels = scan_class_folders(root / "train", "train")
    loader = FolderLoader(ImageDataset(root / "train", rel, labels, CenterCrop(8)), 5, fixed(range(20)),
                          torch.device("cpu"), (0.5,) * 3, (0.5,) * 3)
    with caplog.at_level(logging.INFO, logger="osnas"):
        assert sum(len(y) for _, y in loader) == 19
    (record,) = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert record.levelno == logging.WARNING and "skipped 1 undecodable image(s) this epoch (5.0% of those read" \
        in record.getMessage()


# ----------------------------------------------------------------------------- §3, §5 input sizes


def test_input_size_whose_first_activation_cannot_fit(capsys, tmp_path, config, monkeypatch):
    monkeypatch.setattr("osnas.input_check.available_memory", lambda device: 8 * 2**30)
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", "dataflow.input_size=10000")
    assert "dataflow.input_size=10000: the first activation of a batch of 64 alone needs" in msg
    assert "needs 47.7 GiB (8x5000x5000 values per sample), but only 8.0 GiB of memory is available on cpu" in msg
    msg = fails(capsys, tmp_path, "profile", "-s", "proxylessnas", "--arch", "proxyless_mobile", "--input-size", "20000")
    assert "--input-size=20000: the first activation of a batch of 1 alone needs" in msg and "8.0 GiB" in msg


def test_input_size_too_small_for_the_space(capsys, tmp_path, config):
    msg = fails(capsys, tmp_path, "search", "--config", config(), "--set", "dataflow.input_size=1")
    assert "dataflow.input_size=1 is too small for search space 'proxylessnas'" in msg
    assert "1x1 feature map; the smallest input it can run is 2" in msg


# ----------------------------------------------------------------------------- §5 files and directories


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path):
    from osnas.run_dir import atomic_write_text

    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 \
            == 0o640
        os.chmod(tmp_path / "new.txt", 0o604)  # an existing file keeps its mode, as with open(path, "w")
        atomic_write_text(tmp_path / "new.txt", "y")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(previous)


def test_read_only_output_directory_is_reported_as_read_only(capsys, tmp_path, config, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == out and mode & os.W_OK
                        else real_access(path, mode, **kw))
    monkeypatch.setattr("osnas.run_dir.free_bytes", lambda path: 0)  # a read-only mount reports no free space
    msg = fails(capsys, tmp_path, "search", "--config", config(output={"dir": str(out / "runs"), "name": "t"}))
    assert f"cannot write into {out / 'runs'}: {out} is read-only" in msg
    assert "not enough free disk space" not in msg and not (out / "runs").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-0500 directory; the mocked test above covers it")
def test_read_only_output_directory_for_real(capsys, tmp_path, config):
    out = tmp_path / "out"
    out.mkdir(mode=0o500)
    msg = fails(capsys, tmp_path, "search", "--config", config(output={"dir": str(out), "name": "t"}))
    assert f"cannot write into {out}: {out} is read-only" in msg

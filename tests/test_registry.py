"""Registry: decorator registration, listing, plugin discovery and broken plugins."""

import textwrap

import pytest

from osnas.errors import ConfigError
from osnas.plugins import load_plugins
from osnas.registry import KINDS, REGISTRIES, Registry, register
from tests.conftest import run_osnas


def test_every_kind_has_a_registry_with_builtins():
    assert set(REGISTRIES) == set(KINDS)
    for kind in KINDS:
        assert REGISTRIES[kind].names(), f"no built-in {kind}"
        for name in REGISTRIES[kind].names():
            assert REGISTRIES[kind].describe(name), f"{kind} {name} has no one-line description"


def test_unknown_name_lists_registered():
    registry = Registry("criterion")

    class A:
        """A loss."""

    registry.add("alpha", A)
    with pytest.raises(ConfigError, match="unknown criterion 'beta'; registered: alpha"):
        registry.get("beta")


def test_register_rejects_unknown_kind_and_duplicate():
    with pytest.raises(ValueError, match="unknown component kind"):
        register("not_a_kind", "x")
    registry = Registry("criterion")

    class A:
        pass

    class B:
        pass

    registry.add("a", A)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", B)


def _write_plugin(root, kind, name, body):
    pkg = root / kind / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(body))
    return pkg


def test_plugin_discovery_registers_user_component(tmp_path):
    _write_plugin(tmp_path, "criterion", "my_loss", '''
        import torch.nn.functional as F
        from osnas.criteria.base import Criterion
        from osnas.registry import register

        @register("criterion", "my_loss_plugin_test")
        class MyLoss(Criterion):
            """Plain cross-entropy written by a user."""

            def forward(self, outputs, targets):
                return F.cross_entropy(outputs, targets)
    ''')
    failures = load_plugins([tmp_path])
    assert failures == []
    assert "my_loss_plugin_test" in REGISTRIES["criterion"]
    assert REGISTRIES["criterion"].origin("my_loss_plugin_test") == "plugin"


def test_broken_plugin_is_reported_and_list_still_works(tmp_path):
    _write_plugin(tmp_path, "criterion", "broken", "import this_module_does_not_exist_xyz\n")
    proc = run_osnas("--plugins", str(tmp_path), "list", "criterion")
    assert proc.returncode == 0, proc.stderr
    assert "broken" in proc.stderr and "__init__.py" in proc.stderr
    assert "this_module_does_not_exist_xyz" in proc.stderr
    assert "cross_entropy" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_list_command_prints_names_and_descriptions():
    proc = run_osnas("list")
    assert proc.returncode == 0, proc.stderr
    for kind in KINDS:
        assert kind in proc.stdout
    assert "proxylessnas" in proc.stdout and "uniform" in proc.stdout
    proc = run_osnas("list", "nonsense")
    assert proc.returncode == 2
    assert "valid kinds" in proc.stderr


def test_registry_is_a_leaf_module():
    """Importing the registry imports no component (the built-ins are loaded by osnas.plugins)."""
    import subprocess
    import sys

    code = "import sys, osnas.registry; print(sorted(m for m in sys.modules if m.startswith('osnas')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['osnas', 'osnas.errors', 'osnas.registry']"


def test_registered_name_is_the_contracts_class_attribute():
    for kind in KINDS:
        for name in REGISTRIES[kind].names():
            assert REGISTRIES[kind].get(name).name == name


BROKEN_PLUGINS = {  # package -> (its __init__.py, the line the report must name, the error it must name)
    "exits": ("import os\nraise SystemExit(0)\n", 2, "SystemExit"),
    "interrupted": ("x = 1\n\nraise KeyboardInterrupt\n", 3, "KeyboardInterrupt"),
    "bad_syntax": ("x = 1\ndef broken(:\n    pass\n", 2, "SyntaxError"),
}


@pytest.mark.parametrize("package", sorted(BROKEN_PLUGINS))
def test_any_exception_of_a_plugin_import_names_the_plugins_file_and_line(tmp_path, package):
    body, line, error = BROKEN_PLUGINS[package]
    pkg = _write_plugin(tmp_path, "criterion", package, body)
    failures = load_plugins([tmp_path])
    assert [f.source for f in failures] == [f"{pkg / '__init__.py'}:{line}"]
    assert failures[0].error.startswith(error)


def test_commands_go_on_without_plugins_that_exit_or_interrupt(tmp_path):
    for package, (body, line, error) in BROKEN_PLUGINS.items():
        _write_plugin(tmp_path, "criterion", package, body)
    config = tmp_path / "c.yaml"
    config.write_text("search_space: {name: proxylessnas}\n")
    for args, printed in ((["list", "criterion"], "cross_entropy"), (["config", str(config)], "proxylessnas")):
        proc = run_osnas("--plugins", str(tmp_path), *args)
        assert proc.returncode == 0, proc.stderr
        assert printed in proc.stdout
        for package, (body, line, error) in BROKEN_PLUGINS.items():
            assert f"{package}/__init__.py:{line}" in proc.stderr and error in proc.stderr
        assert "Traceback" not in proc.stderr

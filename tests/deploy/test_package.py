"""The publish package and the static handler: what `func azure functionapp publish` uploads.

STATIC_HANDLER names the static handler to package (scripts/test.sh passes its quick build, kept
under target/ so that no publish takes it); without it, ./handler from scripts/build-static.sh."""
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from template_support import ROOT

STATIC_HANDLER = Path(os.environ.get("STATIC_HANDLER", ROOT / "handler")).resolve()

FUNCTIONS = [
    "AsyncProcessingWorkAcceptor",
    "AsyncProcessingBackgroundWorker",
    "AsyncOperationStatusChecker",
    "AsyncOperationStatusMonitor",
    "AsyncOperationCancel",
    "AsyncProcessingPoisonWorker",
    "AsyncProcessingCallbackWorker",
]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    assert STATIC_HANDLER.is_file(), \
        f"no {STATIC_HANDLER}: build it with scripts/build-static.sh (--quick, as scripts/test.sh does)"
    out = tmp_path_factory.mktemp("dist") / "app.zip"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"),
                          "--handler", str(STATIC_HANDLER), str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    print(run.stdout.splitlines()[-1])
    return out


def test_package_holds_exactly_what_the_host_needs(package):
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
    expected = {"host.json", "handler"} | {f"{f}/function.json" for f in FUNCTIONS}
    assert names == expected, f"unexpected: {sorted(names - expected)}, missing: {sorted(expected - names)}"


def test_handler_in_package_is_executable_and_static(package):
    with zipfile.ZipFile(package) as archive:
        info = archive.getinfo("handler")
        mode = info.external_attr >> 16
        assert stat.S_ISREG(mode) and mode & 0o111, oct(mode)
        head = archive.read("handler")[:64]
    assert head[:4] == b"\x7fELF" and head[4] == 2, "handler is not a 64-bit ELF"
    assert int.from_bytes(head[18:20], "little") == 62, "handler is not x86-64"
    program_headers = subprocess.run(["readelf", "-l", str(STATIC_HANDLER)],
                                     capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in program_headers, "handler is dynamically linked"


def test_package_size(package):
    size = package.stat().st_size
    handler = STATIC_HANDLER.stat().st_size
    print(f"publish zip: {size} bytes ({size / 2**20:.2f} MiB); handler: {handler} bytes "
          f"({handler / 2**20:.2f} MiB)")
    assert size < handler, "the zip should compress the handler"


def test_funcignore_keeps_sources_and_tooling_out():
    patterns = (ROOT / ".funcignore").read_text().split()
    for needed in ["src", "target", "tests", "scripts", "deploy", ".*", "Cargo.toml",
                   "local.settings.json"]:
        assert needed in patterns, needed


def test_host_json_names_the_handler_and_forwards_http():
    host = json.loads((ROOT / "host.json").read_text())
    description = host["customHandler"]["description"]
    assert description["defaultExecutablePath"] == "handler"
    assert host["customHandler"]["enableForwardingHttpRequest"] is True
    assert host["extensions"]["http"]["routePrefix"] == "api"


def test_no_openssl_anywhere_in_the_dependency_tree():
    tree = subprocess.run(
        ["cargo", "tree", "--locked", "-e", "normal,build", "--prefix", "none",
         "--target", "x86_64-unknown-linux-musl"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert tree.returncode == 0, tree.stderr
    crates = {line.split()[0] for line in tree.stdout.splitlines() if line.strip()}
    assert "rustls" in crates, "expected rustls as the TLS stack"
    banned = sorted(c for c in crates if "openssl" in c or c == "native-tls")
    assert banned == [], f"OpenSSL in the tree: {banned}"


def test_package_takes_the_named_handler_and_otherwise_only_dot_handler(tmp_path):
    """The test command packages its quick build by name; a plain package.py (the publish path)
    takes ./handler and nothing else, so a quick build under target/ never ships by accident."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import package as packager
    finally:
        sys.path.pop(0)
    root = tmp_path / "app"
    (root / "target" / "quick").mkdir(parents=True)
    (root / ".funcignore").write_text("target\n")
    (root / "host.json").write_text("{}")
    for path, body in [(root / "handler", b"shipped"), (root / "target" / "quick" / "handler", b"quick")]:
        path.write_bytes(body)
        path.chmod(0o755)

    def handler_in(**kwargs) -> bytes:
        out = tmp_path / "out.zip"
        names = packager.build(root, out, **kwargs)
        assert sorted(names) == ["handler", "host.json"]
        with zipfile.ZipFile(out) as archive:
            return archive.read("handler")

    assert handler_in() == b"shipped"
    assert handler_in(handler=root / "target" / "quick" / "handler") == b"quick"
    (root / "handler").unlink()
    with pytest.raises(SystemExit):
        handler_in()

"""`freeadv doctor`: check this environment before a long run starts, not 10 hours into it.

Each check prints one line, ``OK``, ``WARN`` or ``FAIL`` with what it found; the exit code is 1
when any check fails. Versions, devices, the data the workflow config points at, write access
to the output folders, and the tools the workflow and provenance stamps need.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..data.catalog import DATASETS, DataError, import_function

MINIMUM = {"torch": "2.4", "torchvision": "0.19", "pandas": "2.0", "matplotlib": "3.7", "pyyaml": "6.0"}
OPTIONAL = {"snakemake": "8.0", "pytest": "7.4"}


@dataclass
class Check:
    status: str     # OK | WARN | FAIL
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.detail}"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_packages() -> list[Check]:
    checks = []
    for required, packages in ((True, MINIMUM), (False, OPTIONAL)):
        for name, minimum in packages.items():
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                status = "FAIL" if required else "WARN"
                use = "" if required else " (needed for the Snakemake workflow / the tests)"
                checks.append(Check(status, name, f"not installed; need >= {minimum}{use}"))
                continue
            ok = _version_tuple(version) >= _version_tuple(minimum)
            checks.append(Check("OK" if ok else ("FAIL" if required else "WARN"), name,
                                f"{version}" + ("" if ok else f" is older than the required {minimum}")))
    return checks


def check_devices() -> list[Check]:
    import torch

    checks = [Check("OK", "cpu", f"{os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            bf16 = torch.cuda.is_bf16_supported()
            checks.append(Check("OK" if bf16 else "WARN", f"cuda:{index}",
                                f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
                                + ("" if bf16 else ", no bf16: amp=auto trains in fp32")))
    else:
        build = torch.version.cuda
        checks.append(Check("WARN", "cuda", "no GPU visible: training runs on the CPU (fine for smoke/mini "
                            "scales, weeks for the paper scale; see `freeadv bench`)"
                            + (f"; torch is a CUDA {build} build" if build else "")))
    return checks


def _data_status(dataset: str, root: Path, download: bool) -> Check:
    """What of ``dataset``'s files (its DatasetSpec's ``files``) ``root`` holds: any one of them, or
    every one where the spec names the layout they make up; an archive is checked too."""
    name = f"data {dataset}"
    if dataset not in DATASETS:
        return Check("FAIL", name, f"not a dataset freeadv knows; choose one of: {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    if not spec.files:
        return Check("OK", name, "generated on the fly")
    if not root.is_dir():
        if spec.download and download:
            return Check("WARN", name, f"'{root}' does not exist yet; torchvision will download it there")
        return Check("FAIL", name, f"data root '{root}' does not exist")
    present = [e for e in spec.files if (root / e).exists()]
    if spec.layout:
        ok = len(present) == len(spec.files)
        folders = " and ".join(f"{folder}/" for folder in spec.files)
        return Check("OK" if ok else "FAIL", name, f"'{root}' " + (f"has {folders}" if ok else
                                                                   f"needs {folders} ({spec.layout})"))
    if spec.archive_check and present and (root / present[0]).is_file():
        return _archive_status(name, root / present[0], spec.archive_check)
    if present:
        return Check("OK", name, f"'{root / present[0]}'")
    if spec.download and download:
        return Check("WARN", name, f"'{root}' has no {spec.files[0]}; torchvision will download it")
    return Check("FAIL", name, f"'{root}' has none of {', '.join(spec.files)}")


def _archive_status(name: str, archive: Path, archive_check: str) -> Check:
    """The archive checked by its spec's ``archive_check`` (cifar10-jpeg: its sha256 against the
    published one and its gzip CRC): a damaged copy is FAIL."""
    try:
        return Check("OK", name, f"'{archive}': {import_function(archive_check)(archive)}")
    except DataError as err:
        return Check("FAIL", name, str(err))


def _root_status(root: str) -> list[Check]:
    """Which datasets with files ``root`` holds; each archive there checked on a line of its own
    (its digest and CRC, OK or FAIL)."""
    path = Path(root)
    with_files = [spec for spec in DATASETS.values() if spec.files]
    found = [spec.name for spec in with_files if _data_status(spec.name, path, False).status == "OK"]
    checks = [_archive_status(f"data {spec.name}", path / spec.files[0], spec.archive_check)
              for spec in with_files if spec.archive_check and (path / spec.files[0]).is_file()]
    checks.append(Check("OK" if found else "WARN", f"data root {root}",
                        f"holds {', '.join(found)}" if found else "holds no dataset freeadv knows"))
    return checks


def check_data(workflow_config: dict[str, Any] | None, extra_roots: Iterable[str]) -> list[Check]:
    checks = []
    for dataset, settings in ((workflow_config or {}).get("data") or {}).items():
        root = (settings or {}).get("data_root")
        if root is None:
            checks.append(Check("WARN", f"data {dataset}", "no data_root configured (needed only by targets that "
                                                           f"use {dataset} at paper scale)"))
            continue
        checks.append(_data_status(dataset, Path(root), bool((settings or {}).get("download"))))
    for root in extra_roots:
        checks += _root_status(root)
    return checks


def check_writable(folders: Iterable[str]) -> list[Check]:
    checks = []
    for folder in folders:
        path = Path(folder)
        probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
        try:
            with tempfile.NamedTemporaryFile(dir=probe, prefix=".freeadv-doctor-"):
                pass
            checks.append(Check("OK", f"write {folder}", "writable" + ("" if path.exists() else " (will be created)")))
        except OSError as err:
            checks.append(Check("FAIL", f"write {folder}", f"cannot write in '{probe}': {err.strerror}"))
    return checks


def _snakemake_version(executable: str) -> str:
    """The version of the snakemake on PATH: this environment's package when the script runs this
    Python (`snakemake --version` itself takes ~10 s here, most of it waiting on the network);
    otherwise asked, with a time limit."""
    try:
        shebang = Path(executable).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        shebang = ""
    if shebang.startswith("#!") and Path(shebang[2:].strip()).resolve() == Path(sys.executable).resolve():
        return importlib.metadata.version("snakemake")
    try:
        return subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except subprocess.TimeoutExpired:
        return "version unknown (snakemake --version took over 60 s)"


def check_tools() -> list[Check]:
    checks = []
    git = shutil.which("git")
    if git is None:
        checks.append(Check("WARN", "git", "not found: results will not record the commit that produced them"))
    else:
        from ..provenance import git_commit
        commit = git_commit()
        known = commit.get("commit") not in (None, "unknown")
        detail = (f"commit {commit['commit'][:12]}" + (" with uncommitted changes" if commit.get("dirty") else "")
                  if known else "not inside a git checkout: results will not record a commit")
        checks.append(Check("OK" if known and not commit.get("dirty") else "WARN", "git", detail))
    snakemake = shutil.which("snakemake")
    if snakemake:
        checks.append(Check("OK", "snakemake on PATH", f"{_snakemake_version(snakemake)} at {snakemake}"))
    else:
        checks.append(Check("WARN", "snakemake on PATH", "not found: the workflow needs `pip install -e .[workflow]`"))
    return checks


def run_checks(config_path: str | None, roots: list[str], outputs: list[str]) -> list[Check]:
    workflow_config = None
    checks: list[Check] = []
    if config_path:
        import yaml
        try:
            workflow_config = yaml.safe_load(Path(config_path).read_text())
        except (OSError, yaml.YAMLError) as err:
            checks.append(Check("FAIL", "config", f"cannot read '{config_path}': {err}"))
    return (checks + check_packages() + check_devices() + check_data(workflow_config, roots)
            + check_writable(outputs) + check_tools())

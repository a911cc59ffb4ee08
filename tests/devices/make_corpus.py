"""Regenerate the LoRaWAN golden corpus from the vendors' own codecs (run by hand, not by pytest).

``devices/corpus/lorawan/sources.yaml`` lists each codec (repository, commit, path) and its
examples: an example of the vendor's own codec file (``uplinkDecoder.examples`` of The Things
Network Device Repository), bytes a vendor page gives, or bytes built from a documented
layout (the case says how). For every example this script runs the codec under Node.js
(``tests/devices/run_codec.js``, as ChirpStack v4 and The Things Stack run it), compares the
result with what the vendor says it should be, and writes one case file
``devices/corpus/lorawan/<vendor>/<codec id>--<example>.yaml`` with the source, the bytes,
the codec's output and the vendor's expected output. Nothing of the vendors' code is kept
in this repository: only the bytes and outputs.

The ``description`` and ``expect`` of an existing case file are hand-written (what coldchain
must store, worked out from the vendor's documentation, never from coldchain's own
decoder) and are kept as they are; a new case gets ``expect: null``, which the conformance
suite refuses until someone writes it.

Usage (each ``--source`` is a git repository, bare or not, or a plain folder holding the
repository's files at the commit the manifest names)::

    python -m tests.devices.make_corpus \\
        --source TheThingsNetwork/lorawan-devices=/path/to/lorawan-devices \\
        --source Milesight-IoT/SensorDecoders=/path/to/SensorDecoders \\
        --source dragino/dragino-end-node-decoder=/path/to/dragino-end-node-decoder
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import devices

CORPUS = Path(devices.__file__).parent / "corpus" / "lorawan"
MANIFEST = CORPUS / "sources.yaml"
RUN_CODEC = Path(__file__).with_name("run_codec.js")
# Per-vendor DevEUI prefixes (their IEEE OUIs, as on the devices' labels); the rest of a
# case's DevEUI is a hash of its codec id, so each codec's cases share one device.
_OUI = {
    "Milesight": "24e124",
    "Dragino": "a84041",
    "Elsys": "a81758",
    "Browan": "e8e1e1",
}
# Keys of a case file, in the order written.
_ORDER = (
    "description",
    "vendor",
    "models",
    "codec",
    "example",
    "f_port",
    "bytes",
    "dev_eui",
    "codec_output",
    "vendor_output",
    "matches_vendor",
    "expect",
)


class _Dumper(yaml.SafeDumper):
    """Lists of plain values in flow style (``[sht, temperature, 28.29]``), the rest block."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


class Sources:
    """Reads files of the vendors' repositories at a given commit."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots

    def read(self, repository: str, commit: str, path: str) -> str:
        """A file's text; from git when the root is a repository, else from the folder."""
        root = self.roots.get(repository)
        if root is None:
            raise SystemExit(f"no --source for {repository} (needed for {path})")
        if (root / "HEAD").is_file() or (root / ".git").exists():
            git_dir = root if (root / "HEAD").is_file() else root / ".git"
            done = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{repository}@{commit}:{path}: {done.stderr.decode()}")
            return done.stdout.decode("utf-8")
        return (root / path).read_text(encoding="utf-8")


def run_codec(source: str, f_port: int, payload: bytes) -> Any:
    """The codec's result for one uplink, as Node.js computes it (TZ=UTC, as servers run)."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("Node.js is needed: apt-get install nodejs")
    with tempfile.TemporaryDirectory() as tmp:
        codec = Path(tmp) / "codec.js"
        codec.write_text(source, encoding="utf-8")
        done = subprocess.run(
            [node, str(RUN_CODEC), str(codec), str(f_port), payload.hex()],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "TZ": "UTC"},
        )
    if done.returncode != 0:
        return {"errors": [f"codec threw: {done.stderr.strip().splitlines()[-1][:200]}"]}
    (result,) = json.loads(done.stdout)
    return result


def _example(
    sources: Sources, codec: dict[str, Any], spec: dict[str, Any]
) -> tuple[int, bytes, Any, dict[str, Any]]:
    """(fPort, bytes, the vendor's expected output or None, provenance) of one example.

    The output an example of a Device Repository codec file states belongs to that file's
    codec: it is the vendor's expectation only for a case run through the same codec.
    """
    origin = dict(spec["from"])
    if "example" in origin:  # an uplinkDecoder example of a Device Repository codec file
        text = sources.read(origin["repository"], origin["commit"], origin["path"])
        decoder = yaml.safe_load(text)["uplinkDecoder"]
        found = decoder["examples"][origin["example"]]
        origin.setdefault("description", found.get("description", ""))
        raw = found["input"]["bytes"]
        same_codec = Path(decoder["fileName"]).name == Path(codec["path"]).name
        stated = found.get("output") if same_codec else None
        return int(found["input"]["fPort"]), bytes(raw), stated, origin
    vendor = spec.get("vendor_output")
    return int(spec["f_port"]), bytes.fromhex(spec["hex"]), vendor, origin


def _same(got: Any, want: Any) -> bool:
    """Whether a codec result equals the vendor's stated output (numbers by value)."""
    return bool(json.loads(json.dumps(got)) == json.loads(json.dumps(want)))


def _dev_eui(vendor: str, codec_id: str) -> str:
    return _OUI[vendor] + hashlib.sha256(codec_id.encode()).hexdigest()[:10]


def generate(sources: Sources, *, check: bool = False) -> int:
    """Write (or, with ``check``, compare) every case; returns the number of differences."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    differences = 0
    written: set[Path] = set()
    for codec in manifest["codecs"]:
        source = sources.read(codec["repository"], codec["commit"], codec["path"])
        for spec in codec["examples"]:
            f_port, payload, vendor_output, origin = _example(sources, codec, spec)
            result = run_codec(source, f_port, payload)
            folder = CORPUS / codec["vendor"].lower()
            path = folder / f"{codec['id']}--{spec['name']}.yaml"
            written.add(path)
            old = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
            case: dict[str, Any] = {
                "description": old.get("description") or origin.get("description") or "",
                "vendor": codec["vendor"],
                "models": codec["models"],
                "codec": {k: codec[k] for k in ("repository", "commit", "path")},
                "example": {**origin, **({"note": spec["note"]} if "note" in spec else {})},
                "f_port": f_port,
                "bytes": payload.hex(),
                "dev_eui": _dev_eui(codec["vendor"], codec["id"]),
                "codec_output": result,
                "vendor_output": vendor_output,
                "matches_vendor": None if vendor_output is None else _same(result, vendor_output),
                "expect": old.get("expect"),
            }
            text = yaml.dump(
                {key: case[key] for key in _ORDER},
                Dumper=_Dumper,
                sort_keys=False,
                allow_unicode=True,
                width=96,
            )
            header = (
                "# Generated by tests/devices/make_corpus.py from the vendor's codec; only\n"
                "# `description` and `expect` are written by hand (and kept on regeneration).\n"
            )
            if not path.exists() or path.read_text(encoding="utf-8") != header + text:
                differences += 1
                print(f"{'differs' if check else 'wrote'}: {path.relative_to(CORPUS)}")
                if not check:
                    folder.mkdir(parents=True, exist_ok=True)
                    path.write_text(header + text, encoding="utf-8")
    for stale in sorted(set(CORPUS.glob("*/*.yaml")) - written):
        differences += 1
        print(f"not in the manifest: {stale.relative_to(CORPUS)}")
    return differences


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", default=[], metavar="OWNER/REPO=PATH")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on change")
    args = parser.parse_args(argv)
    roots = {}
    for item in args.source:
        repository, _, folder = item.partition("=")
        roots[repository] = Path(folder)
    differences = generate(Sources(roots), check=args.check)
    print(f"{differences} case file(s) {'differ' if args.check else 'written'}")
    return 1 if args.check and differences else 0


if __name__ == "__main__":
    sys.exit(main())

"""Check a shard folder against its manifest: hashes, counts, index files, optionally pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vireid.errors import VireidError
from vireid.shards.encode import decode_stored
from vireid.shards.manifest import Manifest, ShardInfo, load_manifest
from vireid.shards.tario import Member, index_text, sha256_file, split_member, tar_members


def verify_shards(directory: Path, deep: bool = False,
                  progress: Callable[[int], None] | None = None) -> list[str]:
    """Return one line per problem found (empty: the folder is sound).

    A manifest that cannot be read raises VireidError; every shard problem is reported:
    missing or truncated tar, changed bytes, sample count or keys that differ from the manifest,
    a missing, malformed or stale index, and with ``deep`` an image that does not decode to
    the manifest's size.
    """
    directory = Path(directory)
    manifest = load_manifest(directory)
    problems: list[str] = []
    for number, shard in enumerate(manifest.shards):
        problems += _check_shard(directory, manifest, number, shard, deep)
        if progress:
            progress(shard.count)
    total = sum(s.count for s in manifest.shards)
    if total != len(manifest.samples):
        problems.append(f"{directory / 'manifest.json'}: shards hold {total} samples, "
                        f"the sample table {len(manifest.samples)}")
    return problems


def _check_shard(directory: Path, manifest: Manifest, number: int, shard: ShardInfo,
                 deep: bool) -> list[str]:
    tar = directory / shard.file
    if not tar.is_file():
        return [f"{tar}: missing shard"]
    size = tar.stat().st_size
    if size < shard.bytes:
        return [f"{tar}: truncated ({size} of {shard.bytes} bytes)"]
    if size != shard.bytes:
        return [f"{tar}: size {size} differs from the manifest's {shard.bytes} bytes"]
    if sha256_file(tar) != shard.sha256:
        return [f"{tar}: content differs from the manifest (sha256 mismatch: changed bytes)"]
    try:
        members = tar_members(tar)
    except VireidError as error:
        return [str(error)]
    problems = _check_index(directory / shard.index, members)
    expected = [s.key for s in manifest.samples[shard.first:shard.first + shard.count]]
    keys = list(dict.fromkeys(split_member(m.name)[0] for m in members))
    if keys != expected:
        problems.append(f"{tar}: holds {len(keys)} samples, the manifest lists {len(expected)} "
                        f"(or in another order)")
    if any(s.shard != number for s in manifest.samples[shard.first:shard.first + shard.count]):
        problems.append(f"{tar}: the manifest's sample table places samples elsewhere")
    if deep and not problems:
        problems += _decode_all(tar, manifest, members)
    return problems


def _check_index(index: Path, members: list[Member]) -> list[str]:
    if not index.is_file():
        return [f"{index}: missing index file (DALI needs it to read the shard)"]
    try:
        text = index.read_text()
    except (OSError, UnicodeDecodeError) as error:
        return [f"{index}: unreadable index ({error})"]
    if text != index_text(members):
        return [f"{index}: stale or malformed index (does not match its tar)"]
    return []


def _decode_all(tar: Path, manifest: Manifest, members: list[Member]) -> list[str]:
    problems = []
    extension = manifest.encoding.extension
    with open(tar, "rb") as handle:
        for member in members:
            if split_member(member.name)[1] != extension:
                continue
            handle.seek(member.offset)
            try:
                decode_stored(handle.read(member.size), manifest.encoding, manifest.width,
                              manifest.height)
            except ValueError as error:
                problems.append(f"{tar}: member {member.name} {error}")
    return problems

"""The shard tar writer (webdataset's, configured in ``tario``) against tarfile's USTAR output."""

from __future__ import annotations

import io
import tarfile

from vireid.constants import TAR_MTIME
from vireid.shards.tario import BLOCK, MEMBER_MODE, TarWriter, index_text, tar_members

MEMBERS = [("vis_00001_c01_00000.jpg", b"\xff\xd8\xff" + bytes(700)),
           ("vis_00001_c01_00000.json", b'{"pid":1}'),
           ("vis_00001_c01_00001.png", bytes(BLOCK)),  # data of exactly one block: no padding
           ("vis_00001_c01_00001.json", b"")]


def ustar_oracle(path) -> None:
    """What the writer must produce: plain USTAR members with fixed metadata, in call order."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, MEMBER_MODE
            tar.addfile(info, io.BytesIO(data))


def write(path) -> None:
    writer = TarWriter(path)
    for name, data in MEMBERS:
        writer.add(name, data)
    writer.close()


def test_writer_gives_the_ustar_bytes_and_keeps_member_order(tmp_path):
    write(tmp_path / "a.tar")
    write(tmp_path / "b.tar")
    ustar_oracle(tmp_path / "oracle.tar")
    written = (tmp_path / "a.tar").read_bytes()
    assert written == (tmp_path / "b.tar").read_bytes() == (tmp_path / "oracle.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert all(not m.pax_headers for m in tar)  # no extended header: compact


def test_index_offsets_are_header_plus_one_block(tmp_path):
    write(tmp_path / "a.tar")
    members = tar_members(tmp_path / "a.tar")
    assert [m.name for m in members] == [name for name, _ in MEMBERS]
    assert [m.offset for m in members] == [512, 2048, 3072, 4096]
    assert index_text(members).splitlines() == [
        "v1.2 2",
        "jpg 512 703 vis_00001_c01_00000.jpg json 2048 9 vis_00001_c01_00000.json",
        "png 3072 512 vis_00001_c01_00001.png json 4096 0 vis_00001_c01_00001.json"]

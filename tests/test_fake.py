"""The fake trees: read by the real readers, in the real layouts, deterministic, varied, and
carrying an identity pattern that survives the change of modality."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vireid.datasets import list_datasets, read_dataset
from vireid.errors import VireidError
from vireid.fake import list_fake_datasets, make_fake, render, sysu
from vireid.records import Modality

IMAGE_SUFFIXES = (".jpg", ".bmp")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``built(dataset, seed=0)`` → a default-sized FakeTree, generated once per module."""
    cache = {}

    def make(dataset: str, seed: int = 0):
        if (dataset, seed) not in cache:
            root = tmp_path_factory.mktemp(f"fake-{dataset}-{seed}") / dataset
            cache[dataset, seed] = make_fake(dataset, root, seed=seed)
        return cache[dataset, seed]

    return make


def images_of(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.suffix in IMAGE_SUFFIXES)


def digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def lines_of(path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return text.splitlines()


def test_every_reader_has_a_fake():
    assert list_fake_datasets() == list_datasets()


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_reader_reads_exactly_the_written_images(built, dataset):
    tree = built(dataset)
    raw = read_dataset(dataset, tree.root)
    on_disk = images_of(tree.root)
    assert tree.dataset == dataset
    assert len(on_disk) == tree.num_images == len(raw.records)
    assert sorted(r.path for r in raw.records) == on_disk
    assert len({r.pid for r in raw.records}) == tree.num_ids
    for modality in Modality:
        assert any(r.modality is modality for r in raw.records)


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_same_arguments_give_identical_bytes(built, tmp_path, dataset):
    first = digest(built(dataset).root)
    again = digest(make_fake(dataset, tmp_path / "again", seed=0).root)
    assert again == first
    other = digest(built(dataset, seed=1).root)
    assert other != first
    assert len(set(other.values()) & set(first.values())) < len(first) // 4


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_sizes_vary_and_infrared_is_grey_rgb(built, dataset):
    tree = built(dataset)
    sizes = set()
    for record in read_dataset(dataset, tree.root).records:
        with Image.open(tree.root / record.path) as image:
            assert image.mode == "RGB"
            assert image.format == ("BMP" if dataset == "regdb" else "JPEG")
            pixels = np.asarray(image, dtype=np.int16)
        width, height = pixels.shape[1], pixels.shape[0]
        assert 60 <= width <= 160 and 140 <= height <= 320
        sizes.add((width, height))
        spread = np.abs(pixels - pixels[..., :1]).max()
        if record.modality is Modality.INFRARED:
            assert spread == 0  # three identical channels
        else:
            assert spread > 30  # coloured
    assert len(sizes) > tree.num_images // 3


def test_sysu_layout(built):
    tree = built("sysu")
    root = tree.root
    assert sorted(p.name for p in root.iterdir()) == [f"cam{c}" for c in range(1, 7)] + ["exp"]
    splits = {}
    for name in ("train", "val", "test"):
        lines = lines_of(root / "exp" / f"{name}_id.txt")
        assert len(lines) == 1 and re.fullmatch(r"\d+(,\d+)*", lines[0])
        splits[name] = [int(x) for x in lines[0].split(",")]
    assert [len(splits[n]) for n in ("train", "val", "test")] == [8, 2, 6]
    cameras = {}
    for folder in root.glob("cam*/*"):
        assert re.fullmatch(r"\d{4}", folder.name)
        names = sorted(p.name for p in folder.iterdir())
        assert names == [f"{n:04d}.jpg" for n in range(1, 4)]
        cameras.setdefault(int(folder.name), set()).add(int(folder.parent.name[3:]))
    assert sorted(cameras) == sorted(sum(splits.values(), []))  # disjoint, covering every pid
    for cams in cameras.values():
        assert cams & {3, 6} and cams & {1, 2, 4, 5}
    assert any(len(cams) < 6 for cams in cameras.values())
    assert len(set(map(frozenset, cameras.values()))) > 1  # camera subsets vary


def test_regdb_layout(built):
    root = built("regdb").root
    for pid in range(1, 13):
        for folder, tag in (("Visible", "v"), ("Thermal", "t")):
            names = sorted(p.name for p in (root / folder / str(pid)).iterdir())
            assert len(names) == 10
            for name in names:
                assert re.fullmatch(rf"(male|female)_(front|back)_{tag}_\d{{5}}_{pid}\.bmp", name)
                assert (root / folder / str(pid) / name).read_bytes()[:2] == b"BM"
    assert len(list((root / "idx").iterdir())) == 40
    splits = set()
    for trial in range(1, 11):
        labels = {}
        for split in ("train", "test"):
            for kind, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                lines = lines_of(root / "idx" / f"{split}_{kind}_{trial}.txt")
                assert all(re.fullmatch(rf"{folder}/\d+/\S+\.bmp \d+", x) for x in lines)
                pairs = {(int(x.split("/")[1]), int(x.split(" ")[1])) for x in lines}
                pids = sorted(p for p, _ in pairs)
                assert sorted(pairs) == [(pid, pids.index(pid)) for pid in pids]  # by rank
                assert len(lines) == 10 * len(pairs)
                labels.setdefault(split, pairs)
                assert labels[split] == pairs  # visible and thermal agree
        train, test = ({p for p, _ in labels[s]} for s in ("train", "test"))
        assert len(train) == len(test) == 6 and train | test == set(range(1, 13))
        splits.add(frozenset(train))
    assert len(splits) > 5  # every trial draws its own split


def test_llcm_layout(built):
    root = built("llcm").root
    assert sorted(p.name for p in root.iterdir()) == ["idx", "nir", "test_nir", "test_vis",
                                                      "vis"]
    assert sorted(p.name for p in (root / "test_vis").iterdir()) == [
        f"cam{c}" for c in range(1, 10)]
    assert sorted(p.name for p in (root / "test_nir").iterdir()) == [
        f"cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)]
    lines = lines_of(root / "idx" / "test_id.txt")
    assert len(lines) == 1 and re.fullmatch(r"\d+(,\d+)*", lines[0])
    test_ids = {int(x) for x in lines[0].split(",")}
    train_ids = set()
    for tag in ("vis", "nir"):
        entries = lines_of(root / "idx" / f"train_{tag}.txt")
        for line in entries:
            assert re.fullmatch(rf"{tag}/(\d{{4}})/\1_c\d\d_s\d+_f\d+_{tag}\.jpg \d+", line)
        pids = [int(x[len(tag) + 1:][:4]) for x in entries]
        ranks = sorted(set(pids))
        assert [int(x.split(" ")[1]) for x in entries] == [ranks.index(p) for p in pids]
        train_ids |= set(pids)
    assert len(test_ids) == len(train_ids) == 8 and not test_ids & train_ids
    for pid in test_ids:
        for tag in ("vis", "nir"):
            folders = list(root.glob(f"test_{tag}/cam*/{pid:04d}"))
            assert folders
            for folder in folders:
                cam = int(folder.parent.name[3:])
                for image in folder.iterdir():
                    assert re.fullmatch(rf"{pid:04d}_c{cam:02d}_s\d+_f\d+_{tag}\.jpg",
                                        image.name)


def test_bad_arguments(tmp_path):
    with pytest.raises(VireidError, match="unknown dataset"):
        make_fake("market1501", tmp_path / "m")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(VireidError, match="not empty") as error:
        make_fake("sysu", full)
    assert error.value.where == str(full)
    with pytest.raises(VireidError, match="at least 4 ids"):
        make_fake("llcm", tmp_path / "few", ids=3)
    assert not (tmp_path / "few").exists()
    (tmp_path / "empty").mkdir()
    tree = make_fake("sysu", tmp_path / "empty", ids=4, images_per_camera=1)
    assert read_dataset("sysu", tree.root).records


def band_profile(path) -> np.ndarray:
    """32 row means of a downsampled grey image, standardised: the band structure only."""
    with Image.open(path) as image:
        rows = np.asarray(image.convert("L").resize((8, 32)), dtype=np.float32).mean(axis=1)
    return (rows - rows.mean()) / (rows.std() + 1e-6)


@pytest.mark.parametrize("dataset", list_fake_datasets())
def test_identity_pattern_is_shared_across_modalities(built, dataset):
    """Nearest visible neighbour of each infrared image, on band profiles: usually its own id."""
    tree = built(dataset)
    records = read_dataset(dataset, tree.root).records
    visible = [r for r in records if r.modality is Modality.VISIBLE]
    infrared = [r for r in records if r.modality is Modality.INFRARED]
    gallery = np.stack([band_profile(tree.root / r.path) for r in visible])
    queries = np.stack([band_profile(tree.root / r.path) for r in infrared])
    distances = ((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(axis=2)
    nearest = np.array([visible[i].pid for i in distances.argmin(axis=1)])
    accuracy = (nearest == np.array([r.pid for r in infrared])).mean()
    chance = 1 / len({r.pid for r in visible})
    assert accuracy > 8 * chance


@given(st.integers(0, 2**32 - 1), st.booleans())
def test_sysu_cameras_always_include_both_modalities(seed, force_gap):
    cams = sysu.cameras(np.random.default_rng(seed), force_gap)
    assert cams == sorted(set(cams))
    assert set(cams) & {3, 6} and set(cams) & {1, 2, 4, 5}
    if force_gap:
        assert len(set(cams) & {1, 2, 4, 5}) < 4


@given(st.integers(4, 200), st.integers(0, 2**32 - 1))
def test_sysu_split_is_disjoint_and_never_empty(ids, seed):
    pids = list(range(1, ids + 1))
    parts = sysu.split(pids, np.random.default_rng(seed))
    assert all(parts[name] == sorted(parts[name]) and parts[name] for name in parts)
    assert sorted(sum(parts.values(), [])) == pids


def fake_cli(*args):
    from typer.testing import CliRunner

    from vireid.cli.shard import app

    return CliRunner().invoke(app, ["fake", *map(str, args)])


def assert_one_line_failure(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("dataset, options, fragment", [
    ("sysu", ["--ids", "100000"], "at most 3333 (its pids, drawn from 1..3·ids, are 4-digit"),
    ("sysu", ["--ids", "3334"], "at most 3333"),
    ("llcm", ["--ids", "5000"], "at most 4999"),
    ("regdb", ["--ids", "10000"], "at most 9999"),
    ("sysu", ["--ids", "3"], "got 3 ids"),
    ("regdb", ["--images-per-camera", "0"], "1 to 100 images per camera"),
    ("llcm", ["--images-per-camera", "101"], "got 16 ids, 101 images"),
])
def test_fake_sizes_are_bounded_before_any_work(tmp_path, dataset, options, fragment):
    root = tmp_path / "tree"
    assert_one_line_failure(fake_cli(dataset, root, *options), str(root), fragment)
    assert list(tmp_path.iterdir()) == []


def test_fake_help_states_the_bounds():
    text = " ".join(fake_cli("--help").output.split())
    assert "at least 4, at most llcm 4999, regdb 9999, sysu 3333" in text
    assert "1-100" in text


def test_fake_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_line_failure(fake_cli("regdb", tmp_path / "file" / "tree"), "file",
                            "is a file, not a folder")


@pytest.mark.parametrize("place", ["/proc", "/sys"])
def test_fake_under_proc_or_sys(place):
    assert_one_line_failure(fake_cli("regdb", f"{place}/vireid-test-tree"), place, "cannot")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_fake_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_one_line_failure(fake_cli("sysu", folder / "tree"), "Permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "empty-folder"])
def test_fake_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch, existing):
    import errno

    calls = []

    def save_until_full(image, path):
        calls.append(path)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        render.save(image, path)

    monkeypatch.setattr(sysu, "save", save_until_full)
    root = tmp_path / "empty" if existing else tmp_path / "new" / "tree"
    if existing:
        root.mkdir()
    assert_one_line_failure(fake_cli("sysu", root), str(root), "No space left on device")
    assert len(calls) == 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["empty"] if existing else [])

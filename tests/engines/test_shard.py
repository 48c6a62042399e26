"""restore-run --shard I/N: disjoint slices that cover the sorted inputs, resumable, and one error per bad spec."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restormer_deploy.cli.run import app
from restormer_deploy.engines.shard import parse_shard, shard_slice
from restormer_deploy.restormer.imageio import write_image

runner = CliRunner()


@pytest.mark.parametrize("count", [1, 2, 3, 7, 12, 20])
@pytest.mark.parametrize("n_items", [0, 1, 5, 12])
def test_shards_partition_the_sorted_list(count, n_items):
    items = [f"img_{i:03d}.png" for i in range(n_items)][::-1]  # given in reverse: slicing must sort
    slices = [shard_slice(items, i, count) for i in range(count)]
    flat = [x for s in slices for x in s]
    assert sorted(flat) == sorted(items) and len(flat) == len(set(flat))  # union is the set, no overlap
    assert flat == sorted(items)  # contiguous slices in sorted order
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_shard_is_independent_of_input_order():
    items = [Path(f"d/{c}.png") for c in "qwertyuiop"]
    shuffled = list(np.random.default_rng(0).permutation(items))
    assert [shard_slice(items, i, 3) for i in range(3)] == [shard_slice(shuffled, i, 3) for i in range(3)]


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1) and parse_shard(" 3 / 8 ") == (3, 8)
    for bad, words in [("3", "expected I/N"), ("a/b", "expected I/N"), ("1/2/3", "expected I/N"), ("", "expected I/N"),
                       ("0/0", "N must be at least 1"), ("2/2", "I must be in [0, 2)"), ("-1/4", "I must be in [0, 4)")]:
        with pytest.raises(ValueError, match=None) as info:
            parse_shard(bad)
        assert words in str(info.value), (bad, str(info.value))


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory, small_checkpoint):
    torch.set_num_threads(1)
    return str(small_checkpoint(tmp_path_factory.mktemp("m"), "converse-dncnn")[0])


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"{chr(ord('e') - i)}.png", g.integers(0, 256, (12, 10, 1), dtype=np.uint8))
    return sorted(p.name for p in folder.iterdir())


def test_cli_shards_cover_inputs_once_and_resume(grey_model, tmp_path):
    names = _images(tmp_path / "in", 5)
    seen = []
    for i in range(3):
        report = tmp_path / f"s{i}.json"
        r = runner.invoke(app, [grey_model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--shard", f"{i}/3",
                                "--json", str(report), "--threads", "1"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        data = json.loads(report.read_text())
        assert data["shard"] == f"{i}/3" and all(it["status"] == "ok" for it in data["images"])
        seen.append([Path(it["input"]).name for it in data["images"]])
    assert [x for s in seen for x in s] == names  # each input once, shards in sorted order
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    # a re-run of a shard (a restarted array task) skips what is done
    r = runner.invoke(app, [grey_model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--shard", "1/3",
                            "--json", str(tmp_path / "again.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again.json").read_text())["images"]
    assert [Path(it["input"]).name for it in again] == seen[1] and {it["status"] for it in again} == {"skipped"}


def test_cli_more_shards_than_images_is_not_an_error(grey_model, tmp_path):
    _images(tmp_path / "in", 2)
    r = runner.invoke(app, [grey_model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--shard", "5/8",
                            "--json", str(tmp_path / "r.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "r.json").read_text())["images"] == []


@pytest.mark.parametrize("spec, words", [("0/0", "N must be at least 1"), ("4/4", "I must be in [0, 4)"),
                                         ("-1/2", "I must be in [0, 2)"), ("3", "expected I/N"), ("a/b", "expected I/N")])
def test_cli_bad_shard_exits_2(grey_model, tmp_path, spec, words):
    _images(tmp_path / "in", 1)
    r = runner.invoke(app, [grey_model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--shard", spec],
                      catch_exceptions=False)
    assert r.exit_code == 2 and words in " ".join(r.output.split()), r.output
    assert not (tmp_path / "out").exists()


def test_array_job_examples_use_a_fixed_shard_count(repo_root):
    import yaml

    root = repo_root / "examples"
    job = yaml.safe_load((root / "k8s" / "restore-indexed-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert job["spec"]["completionMode"] == "Indexed" and str(job["spec"]["completions"]) == env["SHARDS"]
    assert '--shard "${JOB_COMPLETION_INDEX}/${SHARDS}"' in container["args"][0]
    sbatch = (root / "slurm" / "restore_array.sbatch").read_text()
    assert '--shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}"' in sbatch and "#SBATCH --array=0-7" in sbatch
    assert ': "${SHARDS:=8}"' in sbatch  # the default equals the array size

"""Every number bound to the weights it describes: the weights digest, train.json's digests, evals
and analyses that record the digest of their run's weights, AutoAttack refusing to resume a state
of other weights, and tables, claims and export refusing an eval of other weights (while results
without a digest, written before digests were recorded, read as before)."""
import io
import json

import numpy as np
import pytest
import torch

from freeadv.report import claims
from freeadv import config as cfg
from freeadv.runs.analysis import adv_examples
from freeadv.attacks import AttackSpec, autoattack
from freeadv.runs import run_attack
from freeadv.checkpoints import load_tensors, weights_digest
from freeadv.experiments import scales
from freeadv.experiments.layout import train_path
from freeadv.runs.export import export_run
from freeadv.report.results import BadResult
from freeadv.report.tables import build_table
from freeadv.training import Trainer
from freeadv.training.runtime import model_for

from test_claims import model_id, write_results
from test_tables import SMALL_SCALE, fake_results

# free m=2 with robust checks and keep_best: writes model.pt and model_best.pt
KEEP_BEST = {"dataset": "synthetic", "arch": "small_cnn", "width": 8, "n_train": 128, "n_test": 32,
             "batch_size": 32, "iterations": 8, "log_every": 4, "checkpoint_every": 4, "eval_n": 16,
             "device": "cpu", "method": "free", "replay": 2, "robust_eval_n": 16, "robust_eval_steps": 2,
             "keep_best": True}
OTHER = "f" * 64   # a digest of no weights here


@pytest.fixture(scope="module")
def best_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("identity") / "run"
    Trainer(cfg.resolve(KEEP_BEST), run_dir, progress=False).run()
    return run_dir


def _train_json(run_dir):
    return json.loads((run_dir / "train.json").read_text())


def _tiny_state():
    torch.manual_seed(0)
    return model_for(cfg.resolve(KEEP_BEST)).state_dict()


# --- the digest ------------------------------------------------------------------------------------

def test_digest_is_stable_and_changes_with_one_element():
    state = _tiny_state()
    digest = weights_digest(state)
    assert len(digest) == 64 and digest == weights_digest({k: v.clone() for k, v in reversed(state.items())})
    buffer = io.BytesIO()   # another container: the legacy (non-zip) torch.save format
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    buffer.seek(0)
    assert weights_digest(torch.load(buffer, weights_only=True)) == digest
    name = next(k for k, v in state.items() if v.is_floating_point())
    changed = {k: v.clone() for k, v in state.items()}
    changed[name].view(-1)[0] += 1e-3
    assert weights_digest(changed) != digest
    assert weights_digest({**state, name: state[name].double()}) != digest       # the dtype counts
    assert weights_digest({**state, name: state[name].reshape(-1)}) != digest    # and the shape
    renamed = {("x" + k if k == name else k): v for k, v in state.items()}
    assert weights_digest(renamed) != digest                                     # and the name


def test_config_digest_is_canonical():
    config = cfg.resolve(KEEP_BEST)
    assert cfg.config_digest(config) == cfg.config_digest(dict(reversed(config.items())))
    assert cfg.config_digest(config) != cfg.config_digest({**config, "seed": config["seed"] + 1})


# --- what records it -------------------------------------------------------------------------------

@pytest.mark.slow   # trains or attacks a model: over ~2 s
def test_train_json_records_the_digests_of_its_weight_files(best_run):
    train = _train_json(best_run)
    assert train["weights_digest"] == weights_digest(load_tensors(best_run / "model.pt"))
    assert train["best_weights_digest"] == weights_digest(load_tensors(best_run / "model_best.pt"))
    assert train["config_digest"] == cfg.config_digest(train["config"])


@pytest.mark.slow   # trains or attacks a model: over ~2 s
def test_evals_and_analyses_record_the_digest_of_their_runs_weights(best_run):
    train = _train_json(best_run)
    final = run_attack(best_run, AttackSpec("none", n=16), device="cpu")
    best = run_attack(best_run, AttackSpec("none", n=16), device="cpu", weights="best")
    assert final["weights_digest"] == train["weights_digest"]
    assert best["weights_digest"] == train["best_weights_digest"]
    assert adv_examples(best_run, steps=1, last=1, device="cpu")["weights_digest"] == train["weights_digest"]


@pytest.mark.slow   # trains or attacks a model: over ~2 s
def test_an_autoattack_state_of_other_weights_is_refused(tmp_path):
    model = model_for(cfg.resolve(KEEP_BEST)).eval()
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    spec, attacks, state = AttackSpec("autoattack", 2, 8), ("apgd-ce",), tmp_path / "state.json"
    first = autoattack.evaluate_autoattack(model, x, y, spec, attacks, batch_size=4, state_path=state)
    saved = json.loads(state.read_text())
    assert saved["weights_digest"] == weights_digest(model.state_dict())
    again = autoattack.evaluate_autoattack(model, x, y, spec, attacks, batch_size=4, state_path=state)
    assert again["flags"] == first["flags"]   # the same weights resume
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    with pytest.raises(ValueError, match=r"state\.json' belongs to other weights.*delete it or choose another --out"):
        autoattack.evaluate_autoattack(model, x, y, spec, attacks, batch_size=4, state_path=state)
    state.write_text(json.dumps({k: v for k, v in saved.items() if k != "weights_digest"}))
    with pytest.raises(ValueError, match="records no weights digest"):
        autoattack.evaluate_autoattack(model, x, y, spec, attacks, batch_size=4, state_path=state)


# --- what checks it --------------------------------------------------------------------------------

def _table_files(tmp_path, eval_digest, train_digest):
    """Table 1's files of a small plan, with digests on free_m8's train.json and its pgd20 eval."""
    plan = scales.build_plan("small", SMALL_SCALE)
    fake_results(tmp_path, plan, "table1", lambda row, metric: 50.0)
    row = next(r for r in plan.targets["table1"].rows if r.key == "free_m8")
    for path, digest in ((tmp_path / row.metrics["pgd20"].file, eval_digest),
                         (tmp_path / train_path(row.model), train_digest)):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, **({"weights_digest": digest} if digest else {})}))
    return plan, row.metrics["pgd20"].file


def test_a_table_refuses_an_eval_of_other_weights(tmp_path):
    plan, file = _table_files(tmp_path, OTHER, "a" * 64)
    with pytest.raises(BadResult, match=f"result file '.*{file}' was computed on weights ffffffffffff"):
        build_table(plan, "table1", tmp_path)


@pytest.mark.parametrize("eval_digest,train_digest", [("a" * 64, "a" * 64), (OTHER, None), (None, "a" * 64)])
def test_a_table_accepts_matching_or_missing_digests(tmp_path, eval_digest, train_digest):
    plan, _ = _table_files(tmp_path, eval_digest, train_digest)
    assert build_table(plan, "table1", tmp_path).set_index("row").loc["free_m8", "pgd20_ours"] == 50.0


def _claims_files(tmp_path, eval_digest, train_digest):
    evidence = write_results(tmp_path)
    (tmp_path / train_path(model_id("free_m8"))).write_text(json.dumps(
        {"config": {}, **({"weights_digest": train_digest} if train_digest else {})}))
    file = tmp_path / f"runs/{model_id('free_m8')}/evals/pgd20.json"
    record = json.loads(file.read_text())
    file.write_text(json.dumps({**record, **({"weights_digest": eval_digest} if eval_digest else {})}))
    return evidence


def test_the_claims_refuse_an_eval_of_other_weights(tmp_path):
    evidence = _claims_files(tmp_path, OTHER, "a" * 64)
    with pytest.raises(ValueError, match="free_m8-s0/evals/pgd20.json' was computed on weights ffffffffffff"):
        claims.c2_free_matches_pgd(evidence)


@pytest.mark.parametrize("eval_digest,train_digest", [("a" * 64, "a" * 64), (OTHER, None), (None, "a" * 64)])
def test_the_claims_accept_matching_or_missing_digests(tmp_path, eval_digest, train_digest):
    evidence = _claims_files(tmp_path / "digests", eval_digest, train_digest)
    plain = claims.c2_free_matches_pgd(write_results(tmp_path / "plain"))   # the same results, no digests
    assert claims.c2_free_matches_pgd(evidence).evidence == plain.evidence
    assert isinstance(evidence.flags("free_m8", "pgd20")[0], np.ndarray)


@pytest.mark.slow   # trains or attacks a model: over ~2 s
def test_export_refuses_an_eval_of_other_weights(best_run, tmp_path):
    ev = run_attack(best_run, AttackSpec("none", n=16), device="cpu")
    (tmp_path / "good.json").write_text(json.dumps(ev))
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in ev.items() if k != "weights_digest"}))
    (tmp_path / "other.json").write_text(json.dumps({**ev, "weights_digest": OTHER}))
    info = export_run(best_run, tmp_path / "out", [tmp_path / "good.json", tmp_path / "old.json"], device="cpu")
    assert info["weights_digest"] == _train_json(best_run)["weights_digest"]
    with pytest.raises(ValueError, match="eval file '.*other.json' was computed on weights ffffffffffff"):
        export_run(best_run, tmp_path / "out2", [tmp_path / "other.json"], device="cpu")

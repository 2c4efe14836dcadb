"""The typed config schemas: every key of every trainer and of sweep configs is declared, every
path (YAML, flags, --set, sweep overrides, resume) is checked, and --set values are typed."""

import json

import numpy as np
import pytest

from rlsub import sweep
from rlsub.config import NULL, ConfigError, Float, Int, List, Section, check, merge, parse_sets
from rlsub.trainers import TRAINERS, get_trainer, resume_config

CONFIGS = {"es": "configs/es/cartpole.yaml", "dqn": "configs/dqn/cartpole.yaml",
           "supervised": "configs/supervised/mnist_fc.yaml"}


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_default_key_has_a_spec_and_every_spec_a_default(name):
    trainer = get_trainer(name)
    assert set(trainer.SCHEMA) == set(trainer.DEFAULTS)
    for key, spec in trainer.SCHEMA.items():
        if spec.kind == "section":
            assert set(spec.fields) == set(trainer.DEFAULTS[key]), key
    check(trainer.DEFAULTS, trainer.SCHEMA)  # the defaults themselves are valid


def test_sweep_schema_covers_its_defaults():
    assert set(sweep.SWEEP_SCHEMA) == set(sweep.SWEEP_DEFAULTS)
    assert set(sweep.SWEEP_SCHEMA["adaptive"].fields) == set(sweep.SWEEP_DEFAULTS["adaptive"])


def test_a_key_without_a_spec_cannot_skip_validation():
    with pytest.raises(ConfigError, match="unknown key"):
        check({"a": 1, "new_key": 2}, {"a": Int()})


def test_new_keys_of_the_lead_engineer_are_validated():
    es, dqn = get_trainer("es"), get_trainer("dqn")
    assert es.resolve(CONFIGS["es"], parse_sets(["optimizer=cma_es", "cma.popsize=16", "cma.diagonal=true",
                                                 "max_timesteps=1000"]))["cma"] == \
        {"popsize": 16, "sigma0": None, "diagonal": True}
    for bad in ("optimizer=adam", "cma.diagonal=3", "cma.sigma0=-1", "max_timesteps=1.5"):
        with pytest.raises(ConfigError):
            es.resolve(CONFIGS["es"], parse_sets([bad]))
    config = dqn.resolve(CONFIGS["dqn"], parse_sets(["select=final", "solved_episodes=100",
                                                     "solved_max_steps=200", "solved_return=195"]))
    assert (config["select"], config["solved_episodes"], config["solved_return"]) == ("final", 100, 195)
    for bad in ("select=last", "solved_episodes=-1", "solved_max_steps=0", "solved_return=high"):
        with pytest.raises(ConfigError):
            dqn.resolve(CONFIGS["dqn"], parse_sets([bad]))


def test_set_values_are_typed_yaml_and_nested():
    sets = parse_sets(["dqn.learning_rate=1e-4", "net_arch=[64, 64]", "cma.popsize=16", "target_return=null",
                       "env=CartPole-v1"])
    assert sets == {"dqn": {"learning_rate": 1e-4}, "net_arch": [64, 64], "cma": {"popsize": 16},
                    "target_return": NULL, "env": "CartPole-v1"}
    config = get_trainer("dqn").resolve(CONFIGS["dqn"], parse_sets(["dqn.learning_rate=1e-4"]))
    from rlsub.config import load_yaml

    yaml_dqn = load_yaml(CONFIGS["dqn"])["dqn"]
    assert config["dqn"]["learning_rate"] == 1e-4 != yaml_dqn["learning_rate"]
    assert config["dqn"]["buffer_size"] == yaml_dqn["buffer_size"]  # the other keys are kept


def test_set_null_unsets_a_key_from_the_yaml():
    es = get_trainer("es")
    assert es.resolve(CONFIGS["es"], {})["target_return"] == 500
    assert es.resolve(CONFIGS["es"], parse_sets(["target_return=null"]))["target_return"] is None


def test_free_form_mappings_merge_key_by_key():
    es = get_trainer("es")
    config = es.resolve(CONFIGS["es"], parse_sets(["model_kwargs.activation=relu"]))
    assert config["model_kwargs"] == {"hidden": [20, 20], "activation": "relu"}


def test_sections_and_lists_report_the_full_key():
    schema = {"opt": Section({"lr": Float(gt=0)}), "dims": List(Int(min=1))}
    with pytest.raises(ConfigError, match=r"opt.lr must be a positive number, got 'x'"):
        check(merge({"opt": {"lr": 1.0}, "dims": []}, {"opt": {"lr": "x"}}, schema=schema), schema)
    with pytest.raises(ConfigError, match=r"dims\[1\] must be a positive integer, got 0"):
        check({"opt": {"lr": 1.0}, "dims": [1, 0]}, schema)


def test_sweep_set_and_overrides_go_through_the_trainer_schema(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"trainer: es\nconfig: {CONFIGS['es']}\ndims: [1, 2]\noverrides: {{generations: 3}}\n")
    config = sweep.resolve(path, tmp_path, parse_sets(["seeds=[4]", "overrides.pairs=5", "threshold=0.8"]))
    assert config["seeds"] == [4] and config["threshold"] == 0.8
    assert config["overrides"] == {"generations": 3, "pairs": 5}
    assert sweep.check_plan(config) == 562
    config = sweep.resolve(path, tmp_path, parse_sets(["overrides.sigma=abc"]))
    with pytest.raises(ConfigError, match="point d=full seed=0: sigma must be a positive number"):
        sweep.check_plan(config)


def test_resume_accepts_a_budget_change_only(tmp_path):
    es = get_trainer("es")
    config = es.resolve(CONFIGS["es"], {"seed": 2})
    (tmp_path / "config.json").write_text(json.dumps({**config, "D": 562, "d": 4}))
    assert resume_config(es, tmp_path, {"generations": 200})["generations"] == 200
    assert resume_config(es, tmp_path, {"seed": 2})["seed"] == 2  # the same value is no change
    for change in ({"seed": 3}, {"dim": 8}, {"sigma": 0.1}, {"cma": {"popsize": 8}}):
        with pytest.raises(ConfigError, match="keeps the settings it started with"):
            resume_config(es, tmp_path, change)


def test_each_trainer_computes_D_without_training():
    from rlsub import trainers

    expected = {"es": 562, "dqn": 562, "supervised": 199_210}
    for name, D in expected.items():
        trainer = trainers.get_trainer(name)
        assert trainer.dimension(trainer.resolve(CONFIGS[name], {})) == D


def test_metric_min_is_derived_or_required_never_guessed():
    from rlsub.es.envs import metric_min

    assert metric_min("CartPole-v1") == 0.0 and metric_min("ALE/Pong-v5") == -21.0
    assert metric_min("Acrobot-v1") == -500.0  # -1 per step, 500 steps
    assert metric_min("Acrobot-v1", max_episode_steps=100) == -100.0
    assert metric_min("MountainCar-v0") == -200.0
    assert metric_min("Pendulum-v1") == pytest.approx(-200 * (np.pi**2 + 0.1 * 64 + 0.001 * 4))
    assert metric_min("Pendulum-v1", configured=-5) == -5.0
    for env in ("MountainCarContinuous-v0", "LunarLander-v3"):
        with pytest.raises(ConfigError, match="set metric_min"):
            metric_min(env)


def test_dqn_without_metric_min_derives_it():
    dqn = get_trainer("dqn")
    config = dqn.resolve(CONFIGS["dqn"], parse_sets(["metric_min=null"]))
    assert config["metric_min"] is None and dqn.run_metric_min(config) == 0.0

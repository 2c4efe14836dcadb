"""Published d_int90 figures (Li, Farkhoor, Liu, Yosinski, ICLR 2018), for side-by-side reports.

These are the paper's numbers, kept as reference data; nothing measured by rlsub is stored here.
Each entry names the sweep config that measures the task with rlsub.
"""

from __future__ import annotations

PAPER: dict[str, dict] = {
    "mnist_fc": {"task": "MNIST, FC 784-200-200-10", "domain": "supervised", "D": 199_210, "d_int90": 750},
    "mnist_lenet": {"task": "MNIST, LeNet", "domain": "supervised", "D": 44_426, "d_int90": 290},
    "mnist_fc_shuffled_pixels": {"task": "MNIST shuffled pixels, FC", "domain": "supervised", "D": 199_210,
                                 "d_int90": 750},
    "mnist_lenet_shuffled_pixels": {"task": "MNIST shuffled pixels, LeNet", "domain": "supervised",
                                    "D": 44_426, "d_int90": 1_400},
    "mnist_fc5_shuffled_labels": {"task": "MNIST 100% shuffled labels, FC 5x400", "domain": "supervised",
                                  "D": 959_610, "d_int90": 190_000},
    "mnist_fc5_shuffled_labels_50": {"task": "MNIST 50% shuffled labels, FC 5x400", "domain": "supervised",
                                     "D": 959_610, "d_int90": 130_000},
    "mnist_fc5_shuffled_labels_10": {"task": "MNIST 10% shuffled labels, FC 5x400", "domain": "supervised",
                                     "D": 959_610, "d_int90": 90_000},
    "cifar_fc": {"task": "CIFAR-10, FC 3072-200-200-10", "domain": "supervised", "D": 656_810, "d_int90": 9_000},
    "cifar_lenet": {"task": "CIFAR-10, LeNet", "domain": "supervised", "D": 62_006, "d_int90": 2_900},
    "cartpole_es": {"task": "CartPole, ES, MLP 4-20-20-2", "domain": "RL", "D": 562, "d_int90": 4},
    "cartpole_dqn": {"task": "CartPole, DQN, MLP 4-20-20-2", "domain": "RL", "D": 562, "d_int90": 25},
    "humanoid_es": {"task": "Humanoid, ES, MLP 256-256", "domain": "RL", "D": 166_673, "d_int90": 700},
    "pong_es": {"task": "Pong, ES, conv policy", "domain": "RL", "D": 1_005_974, "d_int90": 6_000},
}

#: the task every other one is compared with ("N times easier or harder than MNIST FC")
REFERENCE_TASK = "mnist_fc"


def sweep_command(key: str) -> str:
    return f"rlsub sweep --config configs/sweeps/{key}.yaml && rlsub compare-tasks"

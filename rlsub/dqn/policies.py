"""stable-baselines3 DQN policies whose whole Q-network is trained in a random subspace.

``DQN(SubspaceDQNPolicy, env, policy_kwargs=dict(dim=25, projection="dense", net_arch=[20, 20]))``
trains ``theta_D = theta_0 + P theta_d`` (Li et al., ICLR 2018) with SB3's own machinery: its
optimiser, target update, gradient clipping and save/load all act on theta_d alone, because theta_d
is the only ``nn.Parameter`` of the policy's Q-networks.

How this fits SB3 (``stable_baselines3.dqn.policies``): ``DQNPolicy._build`` calls ``make_q_net()``
twice (online and target network), copies the online ``state_dict`` into the target once, and
builds the optimiser from ``q_net.parameters()``; ``DQN._on_step`` runs ``polyak_update`` over the
zipped ``parameters()`` of both. Here ``make_q_net`` returns a :class:`SubspaceQNetwork` whose
features extractor has no parameters and whose ``q_net`` is the whole network (features and head)
wrapped in :class:`rlsub.subspace.SubspaceModel`. Each call builds the network from the same
``init_seed`` and P from the same ``projection_seed``, so theta_0 and P are identical in the online
and target networks, and Polyak averaging theta_d is exact (theta_D is affine in theta_d).

P's buffers are not saved (P is a pure function of its kind, D, d and seed): the SB3 zip holds
theta_d, the optimiser state for theta_d and the constructor arguments. ``dim="full"`` (or None)
trains the same network, with the same initialisation, in the full space (the baseline).
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from rlsub.config import ConfigError
from rlsub.models import ACTIVATIONS, MODELS, register_model
from rlsub.subspace import SubspaceModel
from rlsub.trainers import build_network


def nature_cnn(
    in_channels: int,
    height: int,
    width: int,
    out_dim: int,
    features_dim: int = 512,
    hidden=(),
    activation: str = "relu",
) -> nn.Module:
    """The Nature-DQN network (SB3's NatureCNN features + MLP head) as one module; input [n, C, H, W]."""
    act = ACTIVATIONS[activation]
    side_h, side_w = height, width
    for kernel, stride in ((8, 4), (4, 2), (3, 1)):
        side_h, side_w = (side_h - kernel) // stride + 1, (side_w - kernel) // stride + 1
    if side_h < 1 or side_w < 1:
        raise ConfigError(f"images of {height} x {width} are too small for the Nature CNN (at least 36 x 36)")
    sizes = [features_dim, *[int(h) for h in hidden]]
    head: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        head += [nn.Linear(a, b), act()]
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * side_h * side_w, features_dim), nn.ReLU(),
        *head,
        nn.Linear(sizes[-1], out_dim),
    )


if "nature_cnn" not in MODELS:
    register_model("nature_cnn", nature_cnn)


class ImageInput(BaseFeaturesExtractor):
    """Parameter-free pass-through for image observations (SB3 has already scaled them to [0, 1])."""

    def __init__(self, observation_space: spaces.Box) -> None:
        super().__init__(observation_space, int(torch.Size(observation_space.shape).numel()))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations


class SubspaceQNetwork(QNetwork):
    """SB3 Q-network whose only parameter is theta_d (or, for ``dim='full'``, the plain network's).

    ``q_net`` is the whole network (registry model ``model`` from :mod:`rlsub.models`), wrapped in
    :class:`SubspaceModel` unless ``dim == 'full'``. Without autograd (acting, target values) the
    last theta_D is reused while theta_d is unchanged, so inference skips the projection.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        model: str,
        model_kwargs: dict[str, Any],
        dim: int | str,
        projection: str = "auto",
        projection_seed: int = 0,
        init_seed: int = 0,
        normalize_images: bool = True,
    ) -> None:
        # QNetwork.__init__ would build (and randomly initialise) SB3's own MLP head: skip it.
        BasePolicy.__init__(self, observation_space, action_space, features_extractor=features_extractor,
                            normalize_images=normalize_images)
        self.features_dim = features_dim
        self.model, self.model_kwargs = model, dict(model_kwargs)
        self.net_arch = list(model_kwargs.get("hidden", ()))
        self.q_net, self.D, self.d = build_network(model, model_kwargs, init_seed, dim, projection, projection_seed)
        self.dim = "full" if self.d is None else self.d
        self.projection_kind = self.q_net.projection_kind if self.subspace else None
        self.projection_seed, self.init_seed = projection_seed, init_seed
        if self.subspace:
            # P is regenerated from its seed: keep it out of state_dict (and so out of saved zips).
            proj = self.q_net.projection
            for name, buf in list(proj.named_buffers(recurse=False)):
                proj.register_buffer(name, buf, persistent=False)
        self._cache: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        self._layers = _plain_layers(self.q_net) if self.subspace else None

    @property
    def subspace(self) -> bool:
        return isinstance(self.q_net, SubspaceModel)

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        """Q-values [n, n_actions]."""
        x = self.extract_features(obs, self.features_extractor)
        if not self.subspace:
            return self.q_net(x)
        params = self.native_params()
        if self._layers is None:
            return functional_call(self.q_net.module, params, (x,), strict=False)
        for name, layer in self._layers:
            if isinstance(layer, nn.Linear):
                x = F.linear(x, params[name + ".weight"], params[name + ".bias"])
            elif isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, params[name + ".weight"], params[name + ".bias"], layer.stride, layer.padding,
                             layer.dilation, layer.groups)
            else:
                x = layer(x)
        return x

    def native_params(self) -> dict[str, torch.Tensor]:
        """The network's parameters as views of theta_D = theta_0 + P theta_d.

        Without autograd (acting, target values) the last result is reused while theta_d is
        unchanged. Values are compared, not version counters: polyak_update writes through
        ``.data``, which no version counter sees; comparing d numbers is cheap next to applying P.
        """
        sub = self.q_net
        if torch.is_grad_enabled():
            return sub.params_from_flat(sub.theta_D())
        cache = self._cache
        if cache is None or cache[0].device != sub.theta_d.device or not torch.equal(cache[0], sub.theta_d):
            cache = self._cache = (sub.theta_d.detach().clone(), sub.params_from_flat(sub.theta_D().detach()))
        return cache[1]

    def _apply(self, fn, recurse=True):
        self._cache = None  # theta_D cached on the old device or dtype
        return super()._apply(fn, recurse)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = BasePolicy._get_constructor_parameters(self)
        data.update(features_extractor=self.features_extractor, features_dim=self.features_dim, model=self.model,
                    model_kwargs=self.model_kwargs, dim=self.dim, projection=self.projection_kind or "auto",
                    projection_seed=self.projection_seed, init_seed=self.init_seed)
        return data


def _plain_layers(sub: SubspaceModel) -> list[tuple[str, nn.Module]] | None:
    """The layers of a wrapped Sequential that can run without ``functional_call``, or None.

    ``functional_call`` swaps every parameter in and out of the module on each call, which costs
    more than the whole forward pass of a small Q-network; a Sequential of Linear and Conv2d
    (zero padding, with bias) and parameter-free layers is run directly on views of theta_D.
    """
    if not isinstance(sub.module, nn.Sequential) or any(True for _ in sub.module.buffers()):
        return None
    names = set(sub.param_names)
    layers = []
    for name, layer in sub.module.named_children():
        owned = {n for n in names if n.startswith(name + ".")}
        if isinstance(layer, nn.Conv2d):
            simple = layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
        else:
            simple = isinstance(layer, nn.Linear) or not owned
        if not simple or owned not in (set(), {name + ".weight", name + ".bias"}):
            return None
        layers.append((name, layer))
    return layers


class SubspaceDQNPolicy(DQNPolicy):
    """DQN policy (MLP) trained in a random subspace; use as ``DQN(SubspaceDQNPolicy, env, ...)``.

    Args (beyond SB3's DQNPolicy):
        dim: subspace dimension d (1 <= d <= D), or ``'full'`` / None for the full-space baseline.
        projection: ``dense``, ``sparse``, ``fastfood`` or ``auto`` (:mod:`rlsub.projections`).
        projection_seed: seed of P.
        init_seed: seed of theta_0, the network's initialisation (same in online and target nets).
        net_arch: hidden layer sizes of the MLP (for the CNN variant: of the head after the
            512-unit feature layer).
        activation_fn: ``nn.ReLU`` or ``nn.Tanh``.
    """

    model_name = "mlp"

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        dim: int | str | None = "full",
        projection: str = "auto",
        projection_seed: int = 0,
        init_seed: int = 0,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        names = {cls: name for name, cls in ACTIVATIONS.items()}
        if activation_fn not in names:
            raise ConfigError(f"activation_fn must be one of {[c.__name__ for c in names]}, got {activation_fn!r}")
        # Read by make_q_net, which DQNPolicy.__init__ reaches through _build.
        self.subspace_args = dict(dim="full" if dim is None else dim, projection=projection,
                                  projection_seed=projection_seed, init_seed=init_seed,
                                  activation=names[activation_fn])
        extractor = ImageInput if self.model_name == "nature_cnn" else FlattenExtractor
        super().__init__(observation_space, action_space, lr_schedule, net_arch, activation_fn,
                         features_extractor_class=extractor, normalize_images=normalize_images,
                         optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the registry model for this observation and action space."""
        n_actions = int(self.action_space.n)
        hidden = [int(h) for h in (self.net_arch or [])]
        activation = self.subspace_args["activation"]
        if self.model_name == "mlp":
            in_dim = self.features_extractor_class(self.observation_space).features_dim
            return dict(in_dim=in_dim, out_dim=n_actions, hidden=hidden, activation=activation)
        if not is_image_space(self.observation_space, check_channels=False, normalized_image=not self.normalize_images):
            raise ConfigError(f"the CNN policy needs image observations, got {self.observation_space}")
        c, h, w = self.observation_space.shape  # SB3 transposes images to channels-first
        return dict(in_channels=c, height=h, width=w, out_dim=n_actions, hidden=hidden, activation=activation)

    def make_q_net(self) -> SubspaceQNetwork:
        extractor = self.features_extractor_class(self.observation_space)
        args = {k: v for k, v in self.subspace_args.items() if k != "activation"}
        return SubspaceQNetwork(self.observation_space, self.action_space, extractor, extractor.features_dim,
                                self.model_name, self.model_kwargs(), normalize_images=self.normalize_images,
                                **args).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        data.update({k: v for k, v in self.subspace_args.items() if k != "activation"})
        return data


class SubspaceCnnPolicy(SubspaceDQNPolicy):
    """The CNN variant (Atari): Nature-DQN convolutions + 512-unit layer + head, all projected."""

    model_name = "nature_cnn"

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 net_arch: list[int] | None = None, **kwargs) -> None:
        super().__init__(observation_space, action_space, lr_schedule, [] if net_arch is None else net_arch,
                         **kwargs)


MlpPolicy = SubspaceDQNPolicy
CnnPolicy = SubspaceCnnPolicy

"""``rlsub eval``: rebuild a trained model from a run directory or an export and evaluate it."""

from __future__ import annotations

import sys

from rlsub.errors import UserError

HELP = "evaluate a trained run or export (RL: episode returns, optionally rendered; supervised: test accuracy)"


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN_DIR_OR_EXPORT", help="a run directory or a file written by `rlsub export`")
    p.add_argument("--episodes", type=int, help="episodes (default: the run's eval_episodes)")
    p.add_argument("--seed", type=int, help="seed of the episodes (ES: episode k starts from reset(seed=SEED + k); "
                   "DQN: the evaluation environment's seed). Default: the run's own final evaluation, replayed "
                   "so that the recorded value is reproduced")
    p.add_argument("--max-steps", type=int, help="cap on episode length (default: the run's)")
    p.add_argument("--render", choices=["gif", "mp4"], help="also write the evaluated episodes as a video")
    p.add_argument("--out", help="video file for --render (default <run>.gif / .mp4 in the current folder)")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate (default 30)")
    p.add_argument("--quiet", action="store_true", help="only the result line")


def run(args) -> int:
    from pathlib import Path

    from rlsub.loading import describe, headless, load_run, write_video

    for name in ("episodes", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.out and not args.render:
        raise UserError("--out names the video of --render; add --render gif or --render mp4")
    out = None
    if args.render:
        out = Path(args.out or f"{Path(args.run).stem}.{args.render}")
        if out.suffix.lower() != f".{args.render}":
            raise UserError(f"--render {args.render} writes a .{args.render} file, not {out.name}")
        headless()
    loaded = load_run(args.run)
    if loaded.trainer == "supervised":
        given = [f for f, v in (("--render", args.render), ("--episodes", args.episodes), ("--seed", args.seed),
                                ("--max-steps", args.max_steps)) if v is not None]
        if given:
            raise UserError(f"{', '.join(given)}: for RL runs; a supervised run is evaluated on its test set")
    info = describe(loaded)
    if not args.quiet:
        for note in loaded.notes:
            print(f"eval: note: {note}", file=sys.stderr)
    frames = [] if args.render else None
    result = loaded.evaluate(episodes=args.episodes, seed=args.seed, max_steps=args.max_steps, frames=frames)
    head = f"{info['task']} ({info['trainer']}, d={info['dim']}, seed={info['seed']})"
    # the recorded value is comparable only when the run's own episodes were replayed
    own = result["replayed"] and args.episodes is None and args.max_steps is None
    recorded = loaded.summary.get("value") if own and loaded.summary.get("metric") == result["metric"] else None
    if result["metric"] == "test_accuracy":
        recorded = loaded.summary.get("test_accuracy")
        line = f"{head}: test accuracy {result['value']:.4f} on {result['examples']} examples"
        if recorded is not None:
            line += f" (recorded {recorded:.4f})"
    else:
        line = (f"{head}: mean return {result['value']:.2f} +- {result['std']:.2f} over {result['episodes']} "
                f"episodes, mean length {sum(result['lengths']) / len(result['lengths']):.1f}")
        if recorded is not None:
            line += f" (recorded {recorded:.2f})"
    print(line)
    if frames is not None:
        write_video(frames, out, args.fps)
        print(f"video: {out} ({len(frames)} frames, {out.stat().st_size / 1024:.0f} KiB)")
    return 0


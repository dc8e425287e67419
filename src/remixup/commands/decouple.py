"""``remixup decouple``: a second stage on a finished run (cRT, LWS, τ-normalisation, NCM, MiSLAS).

    remixup decouple runs/remix-drw --method crt --out runs/remix-drw-crt [--epochs 10] [--device cpu] [--resume]
    remixup decouple runs/mixup --method mislas --out runs/mixup-mislas [--smooth-head 0.4 --smooth-tail 0.1]

The output is an ordinary run folder: ``remixup eval``, ``predict`` and ``report`` read it; its ``summary.json`` names
the first stage and its checkpoint's SHA-256. See :mod:`remixup.decouple` for what each method does.
"""

from __future__ import annotations

import argparse


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off; got {text!r}")


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="the first stage: a run folder trained by `remixup train` (or its checkpoint.pt)")
    parser.add_argument("--method", required=True, help="crt, lws, tau-norm, ncm or mislas")
    parser.add_argument("--out", required=True, help="the new run folder")
    parser.add_argument("--epochs", type=int, help="training epochs of crt, lws and mislas (default 10)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate, cosine decay to 0 (default 0.1)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--weight-decay", type=float, default=2e-4, help="weight decay (default 2e-4)")
    parser.add_argument("--seed", type=int, help="seed of the batches and cRT's initialisation (default the first stage's)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="tau-norm, when the first stage held out no validation split (data.val_fraction=0): the share "
                             "of each class of the training split on which tau is chosen (default 0.1)")  # fmt: skip
    parser.add_argument("--smooth-head", type=float, help="mislas: epsilon of the most frequent class (default: the authors')")
    parser.add_argument("--smooth-tail", type=float, help="mislas: epsilon of the rarest class (default: the authors')")
    parser.add_argument(
        "--shift-bn", type=_switch, help="mislas: re-estimate BatchNorm statistics, on or off (default: the authors')"
    )
    parser.add_argument("--lr-factor", type=float, help="mislas: the classifier's lr factor (default: the authors')")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: PyTorch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the second stage in --out")
    parser.add_argument("--no-progress", action="store_true", help="no log line per epoch")


def run(args: argparse.Namespace) -> int:
    from remixup._validation import check_number
    from remixup.decouple import DecoupleOptions, decouple

    check_number(args.threads, "--threads", low=0, integer=True)
    options = DecoupleOptions(method=str(args.method).lower(), epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                              weight_decay=args.weight_decay, seed=args.seed, val_fraction=args.val_fraction,
                              smooth_head=args.smooth_head, smooth_tail=args.smooth_tail, shift_bn=args.shift_bn,
                              lr_factor=args.lr_factor)  # fmt: skip
    summary = decouple(args.run, out=args.out, options=options, resume=args.resume, device=args.device,
                       threads=args.threads, progress=not args.no_progress)  # fmt: skip
    tau = f" (tau {summary['decouple']['tau']:g} on the validation split)" if "tau" in summary["decouple"] else ""
    shown = "  ".join(f"{k} {summary[k]:.2f}" if summary[k] is not None else f"{k} -"
                      for k in ("top1", "top5", "balanced_acc", "many", "medium", "few"))  # fmt: skip
    print(f"{summary['method']} on {summary['dataset']}{tau}: {shown}  -> {args.out}/summary.json")
    return 0

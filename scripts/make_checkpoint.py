"""Train chapter 7's small MobileViT and its equal-size CNN (seed 0) and write the checkpoints the package ships.

    python scripts/make_checkpoint.py            # writes mobilevit_edu/assets/{mobilevit_mini,cnn_mini}.pt
    python scripts/make_checkpoint.py --out DIR  # somewhere else (e.g. to compare before overwriting)

The run is exactly chapter 7's seed-0 run: the data of `mobilevit_edu.train.CHAPTER7_DATA`
(`matching_marks_splits`), the recipe `CHAPTER7_RECIPE` with seed 0, the models built by
`build_model(MINI / MINI_CNN, seed=0)`, on the CPU with 2 threads (as scripts/execute_notebooks.py runs
the chapter), so the chapter can compare its seed-0 network with the shipped one. The same bytes come
back only on the CPU (instruction set, thread count) that wrote them: on another, the rounding grows over
the 92 steps to weights about 1e-2 away (max abs; 1e-3 relative L2; measured with 1 and 2 threads and
with AVX2 and PyTorch's default kernels) with the same validation accuracy, so chapter 7 compares them
within a stated tolerance (book/authoring.md). Each checkpoint holds the state dict, the MobileViTConfig
and the TrainConfig as plain data, and the validation accuracy;
`mobilevit_edu.train.load_checkpoint` rebuilds the model, `torch.load(path, weights_only=True)` reads it.
Chapter 8 loads them. Takes well under a minute on 2 idle cores.
"""

import argparse
import dataclasses
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "mobilevit_edu" / "assets")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("MKL_NUM_THREADS", "2")
    sys.path.insert(0, str(ROOT))
    import torch

    from mobilevit_edu.data import matching_marks_splits
    from mobilevit_edu.models import MINI, MINI_CNN
    from mobilevit_edu.train import CHAPTER7_DATA, CHAPTER7_RECIPE, build_model, fit, save_checkpoint

    torch.set_num_threads(2)
    train_set, val_set = matching_marks_splits(**CHAPTER7_DATA)
    config = dataclasses.replace(CHAPTER7_RECIPE, seed=0)
    for model_config in (MINI, MINI_CNN):
        model = build_model(model_config, seed=0)
        history = fit(model, train_set, val_set, config, progress=False)
        path = save_checkpoint(
            args.out / f"{model_config.name}.pt", model, train_config=config,
            metrics={"val_accuracy": history.final_val_metric, "epoch_val_accuracy": list(history.epoch_val_metric)},
            note="chapter 7, seed 0: matching_marks_splits(**CHAPTER7_DATA), fit(..., CHAPTER7_RECIPE)",
        )
        size_kb = path.stat().st_size / 1024
        print(f"{model_config.name}: validation accuracy {history.final_val_metric:.3f}, {size_kb:.0f} KB -> {path}")


if __name__ == "__main__":
    main()

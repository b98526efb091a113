"""The experiment checks of exercises 10 and 11: right answers pass, blank ones say "not implemented yet",
wrong ones are rejected with a message naming the mistake."""

import statistics

import torch
from _checking import is_stub, passes, rejects, stub

from mobilevit_edu.checks import check_context_error, check_flag_reading, check_flag_summary
from mobilevit_edu.checks.experiments_10_11 import flag_sweep
from mobilevit_edu.segmentation import FLAG_MOBILEVIT, flag_segmenter


def context_error(gate, target):
    c = (gate * target).sum(0) / (gate * gate).sum(0)
    return ((gate * c - target).norm() / target.norm()).item()


def test_context_error_right_answer_passes(capsys):
    passes(check_context_error, context_error, capsys)


def test_context_error_accepts_a_zero_dim_tensor(capsys):
    passes(check_context_error, lambda g, t: torch.tensor(context_error(g, t)), capsys)


def test_context_error_blank_is_reported(capsys):
    is_stub(check_context_error, stub, capsys)


def test_context_error_rejects_the_absolute_error():
    def absolute(gate, target):
        c = (gate * target).sum(0) / (gate * gate).sum(0)
        return (gate * c - target).norm().item()

    rejects(check_context_error, absolute, "divide it by ||target||")


def test_context_error_rejects_the_mean_of_the_target():
    def mean_c(gate, target):
        return ((gate * target.mean(0) - target).norm() / target.norm()).item()

    rejects(check_context_error, mean_c, "best c only when the gate is 1")


def test_context_error_rejects_dividing_by_the_sum_of_the_gate():
    def by_sum(gate, target):
        c = (gate * target).sum(0) / gate.sum(0)
        return ((gate * c - target).norm() / target.norm()).item()

    rejects(check_context_error, by_sum, "not Σ gate")


def test_context_error_rejects_summing_over_the_channels():
    def wrong_axis(gate, target):
        c = (gate * target).sum(1, keepdim=True) / (gate * gate).sum(1, keepdim=True)
        return ((gate * c - target).norm() / target.norm()).item()

    rejects(check_context_error, wrong_axis, "summed over the channels")


def test_context_error_rejects_a_tensor_per_channel():
    rejects(check_context_error, lambda g, t: (g - t).norm(dim=0), "return one number")


def test_flag_reading_blank_is_reported(capsys):
    is_stub(check_flag_reading, stub, capsys)


def test_flag_reading_rejects_an_untrained_network():
    rejects(check_flag_reading, lambda: flag_segmenter(FLAG_MOBILEVIT, seed=0), "flip with the flag")


def test_flag_reading_rejects_a_network_that_ignores_the_flag():
    class DiscAsRed(torch.nn.Module):  # the truth's shapes, every disc called "red flag": never flips
        def forward(self, x):
            from mobilevit_edu.data import flag_shapes

            truth = flag_shapes(200, size=64, seed=1).tensors[1][: len(x)]
            truth = torch.where(truth == 4, 3, truth)
            return torch.nn.functional.one_hot(truth, 5).permute(0, 3, 1, 2).float()

    rejects(check_flag_reading, lambda: DiscAsRed(), "decides their class without the flag")


def test_flag_reading_accepts_a_network_that_reads_the_flag(capsys):
    class Oracle(torch.nn.Module):  # the truth, with the disc's class read from the flag's colour in x
        def forward(self, x):
            from mobilevit_edu.data import FLAG_COLOURS, flag_shapes

            truth = flag_shapes(200, size=64, seed=1).tensors[1][: len(x)].clone()
            red = torch.tensor(FLAG_COLOURS[0]).view(1, 3, 1, 1)
            has_red = ((x - red).abs().amax(dim=1) < 1e-6).flatten(1).any(dim=1)  # (B,)
            disc = truth >= 3
            truth[disc] = torch.where(has_red, 3, 4).view(-1, 1, 1).expand_as(truth)[disc]
            return torch.nn.functional.one_hot(truth, 5).permute(0, 3, 1, 2).float()

    passes(check_flag_reading, lambda: Oracle(), capsys)


def test_flag_reading_rejects_wrong_output_shape():
    rejects(check_flag_reading, lambda: torch.nn.Conv2d(3, 5, 3, stride=2, padding=1), "should give scores of shape")


def test_flag_reading_rejects_something_that_is_not_a_network():
    rejects(check_flag_reading, lambda: "model", "return the trained network")


# ------------------------------------------------------------------- exercise 11: the sweep's summary
def first_epoch(run, above=lambda f: f > 0.5, start=1):
    return next((epoch for epoch, f in enumerate(run["flip_share_per_epoch"], start) if above(f)), None)


def flag_summary(runs, median=statistics.median, above=lambda f: f > 0.5, start=1):
    finals = [r["flip_share"] for r in runs]
    return {"median_flip": median(finals), "seeds_reading": sum(1 for f in finals if above(f)),
            "epochs_to_read": [first_epoch(r, above, start) for r in runs]}


def test_flag_sweep_has_five_seeds_per_network_at_eight_epochs():
    runs = [r for r in flag_sweep()["runs"] if r["epochs"] == 8 and r["isa"] == "native" and r["threads"] == 1]
    for kind in ("mobilevit", "cnn"):
        seeds = sorted(r["seed"] for r in runs if r["kind"] == kind)
        assert len(seeds) >= 5 and len(set(seeds)) == len(seeds), (kind, seeds)
        assert all(len(r["flip_share_per_epoch"]) == 8 for r in runs if r["kind"] == kind)


def test_flag_summary_right_answer_passes(capsys):
    assert "all 4 cases" in passes(check_flag_summary, flag_summary, capsys)


def test_flag_summary_accepts_a_tuple_of_epochs_and_a_tensor_median(capsys):
    def as_tensors(runs):
        result = flag_summary(runs)
        return result | {"median_flip": torch.tensor(result["median_flip"]), "epochs_to_read": tuple(result["epochs_to_read"])}

    passes(check_flag_summary, as_tensors, capsys)


def test_flag_summary_blank_is_reported(capsys):
    is_stub(check_flag_summary, stub, capsys)


def test_flag_summary_rejects_the_mean():
    rejects(check_flag_summary, lambda runs: flag_summary(runs, median=statistics.fmean), "that is the mean")


def test_flag_summary_rejects_the_lower_median():
    lower = lambda values: torch.tensor(values).median().item()  # torch.median: the lower of the middle two
    rejects(check_flag_summary, lambda runs: flag_summary(runs, median=lower), "mean of the two middle values")


def test_flag_summary_rejects_half_as_reading():
    rejects(check_flag_summary, lambda runs: flag_summary(runs, above=lambda f: f >= 0.5), "0.5 does not count")


def test_flag_summary_rejects_epochs_counted_from_zero():
    rejects(check_flag_summary, lambda runs: flag_summary(runs, start=0), "epochs count from 1")


def test_flag_summary_rejects_dropping_the_runs_that_never_read():
    def dropped(runs):
        result = flag_summary(runs)
        return result | {"epochs_to_read": [e for e in result["epochs_to_read"] if e is not None]}

    rejects(check_flag_summary, dropped, "None for a run that never reads the flag")


def test_flag_summary_rejects_the_last_epoch_above_half():
    def last_epoch(runs):  # the epoch the run last read the flag, not the first
        result = flag_summary(runs)
        epochs = [max((e for e, f in enumerate(r["flip_share_per_epoch"], 1) if f > 0.5), default=None) for r in runs]
        return result | {"epochs_to_read": epochs}

    rejects(check_flag_summary, last_epoch, "epochs_to_read is")


def test_flag_summary_rejects_a_list_instead_of_a_dict():
    rejects(check_flag_summary, lambda runs: list(flag_summary(runs).values()), "return a dict with the keys")

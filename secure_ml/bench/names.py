"""Names of bench protocols and ratio fields, shared by the harness and the report.

They live here, with no imports, so that ``report`` need not import
``harness`` (which writes its outputs with ``report``): no import cycle.
"""

from __future__ import annotations

#: an ablation's protocol name is this prefix and the variant ("none", "-X")
ABLATION_PREFIX = "secure_ml ablation:"
#: the raw baseline written with secure_ml's algorithm (see ``harness``'s docstring)
CLOSED_FORM = "raw_crypten_closed_form"
#: raw baseline protocol -> the ratio field that compares secure_ml runs with it
RAW_RATIOS = {"raw_crypten": "ratio_to_raw_crypten", CLOSED_FORM: f"ratio_to_{CLOSED_FORM}"}
#: secure_ml with every link sealed (``[transport] encryption = "on"``, keys made
#: in the run's scratch folder), beside the plain ``secure_ml`` record: loopback
#: runs are otherwise plain, so this is the channel's cost on its own
ENCRYPTED = "secure_ml encrypted"
#: the encrypted record's wall time / the plain ``secure_ml`` record's
PLAIN_CHANNEL_RATIO = "ratio_to_plain_channel"
#: a dp.stats run at collusion threshold t is this prefix and t ("secure_ml dp:t=1")
DP_PREFIX = "secure_ml dp:t="
#: a DP row's observed error: mean |released mean - exact| / column width
DP_ERROR = "mean_error_rel_width"
#: a DP-SGD task's run with its [dp] section removed, measured together with the DP run
NO_DP = "secure_ml no-dp"
#: the DP-SGD record's wall time / its ``NO_DP`` twin's (also ``bytes_`` and ``rounds_``)
NON_DP_RATIO = "ratio_to_non_dp"
#: the value of a plaintext record's ``baseline`` field when it is Opacus DP-SGD
OPACUS = "opacus"
#: CKKS inference beside MPC inference of one model (see ``he_rows``)
HE_TASK = "he_infer_digits_mlp"
#: he.infer with one ciphertext per input feature across the whole test split
HE_BATCHED = "he.infer batched"
#: he.infer with one ciphertext per sample (one query's latency)
HE_PER_SAMPLE = "he.infer per_sample"
#: TenSEAL's tutorial approach in the bench process: one sample per ciphertext, no transport
HE_NAIVE = "tenseal naive"
#: the batched evaluation at full packing (N/2 samples: the test split repeated), in the
#: bench process without transport, like the naive baseline: the packing's capacity
HE_FULL = "ckks batched full slots"
#: the batched record's samples per second / the naive baseline's
HE_RATIO = "throughput_ratio_to_naive"

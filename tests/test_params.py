"""params.py: parameter counts equal what a framework gets by instantiating the model."""

from pathlib import Path

import pytest

import tokenmath as tm
from tokenmath.params import PARTS

DATA = Path(__file__).parent / "data"

# (model, total, active). Source: the counts `sum(p.numel() for p in model.parameters())` gives in
# Hugging Face transformers for each config.json, as listed in tokenmath issue 2 (foundation);
# active = total less the (E - k) unused routed experts per MoE layer. MTP layers excluded.
# Published cross-checks: Llama 3.1 model card 8.03B / 70.6B / 405B; Mixtral paper 46.7B / 12.9B;
# Qwen3 tech report 235B / 22B; DeepSeek-V3 report 671B / 37B; gpt-oss model card 117B / 5.1B
# active *excluding* embeddings (here they are included, as the issue specifies).
EXACT = [
    ("llama-3.1-8b", 8_030_261_248, 8_030_261_248),
    ("llama-3.1-70b", 70_553_706_496, 70_553_706_496),
    ("llama-3.1-405b", 405_853_388_800, 405_853_388_800),
    ("mixtral-8x7b", 46_702_792_704, 12_879_925_248),
    ("qwen3-235b-a22b", 235_093_634_560, 22_190_763_520),
    ("deepseek-v3", 671_026_404_352, 37_552_282_624),
    ("gpt-oss-120b", 116_829_156_672, 5_711_982_912),
]


@pytest.mark.parametrize("name, total, active", EXACT)
def test_exact_counts(cat, name, total, active):
    """Exact (tolerance 0) against the instantiated-model counts in issue 2."""
    pc = tm.param_counts(cat.model(name))
    assert pc.total == total
    assert pc.active == active


def test_llama2_counts_match_meta_release(cat):
    """Llama 2 paper (Touvron et al. 2023, Table 1) names 7B and 70B; the HF checkpoints hold
    6,738,415,616 and 68,976,648,192 parameters (meta-llama/Llama-2-*-hf safetensors index).
    Tolerance 0: the config is a plain Llama."""
    assert tm.param_counts(cat.model("llama-2-7b")).total == 6_738_415_616
    assert tm.param_counts(cat.model("llama-2-70b")).total == 68_976_648_192


@pytest.mark.parametrize("name", ["deepseek-v3", "qwen3-235b-a22b", "gpt-oss-120b", "llama-3.1-8b", "kimi-k2"])
def test_breakdown_sums_to_total(cat, name):
    pc = tm.param_counts(cat.model(name))
    assert sum(pc.parts().values()) == pc.total
    assert pc.active == pc.total - pc.routed_experts + pc.routed_experts_active


def test_deepseek_breakdown_and_sparsity(ds3):
    """DeepSeek-V3 routes each token to 8 of 256 experts (config num_experts_per_tok = 8), so
    N_total/N_active = 671.0/37.55 = 17.87, not the lecture's 8 and not the expert ratio 32.
    The MTP module is counted apart; with its own copies of the embedding and head (as the
    checkpoint stores them) main + MTP matches the report's "685B" (DeepSeek-V3 README), 0.2 %."""
    pc = tm.param_counts(ds3)
    assert ds3.moe.k == 8 and ds3.moe.n_experts == 256
    assert pc.sparsity == pytest.approx(17.87, abs=0.01)
    assert pc.total + pc.mtp + 2 * pc.embedding == pytest.approx(685e9, rel=0.002)
    assert pc.mtp not in (0, None) and pc.total == 671_026_404_352


def test_kimi_k2_matches_published_totals(cat):
    """Kimi K2 README / arXiv 2507.20534: 1T total, 32B active. Tolerance 3 %."""
    pc = tm.param_counts(cat.model("kimi-k2"))
    assert pc.total == pytest.approx(1.0e12, rel=0.03)
    assert pc.active == pytest.approx(32e9, rel=0.03)


def test_gemma2_9b_exact():
    """google/gemma-2-9b: 9.24B parameters (HF model page; tied embeddings, 4 norms per layer).
    The architecture sums to 9,241,705,984; tolerance 0.05 % on the published 9.24B."""
    pc = tm.param_counts(tm.model_from_config_file(DATA / "gemma-2-9b.json"))
    assert pc.total == pytest.approx(9.24e9, rel=5e-4)
    assert pc.lm_head == 0


@pytest.mark.parametrize(
    "file, total, active, rel_total, rel_active",
    [
        # Meta Llama 4 announcement (2025-04-05): Maverick 400B total / 17B active, 128 experts.
        ("llama-4-maverick.json", 400e9, 17e9, 0.01, 0.02),
        # Scout: "109B total" counts the vision encoder too (~1.7B); text model alone ~107.8B.
        ("llama-4-scout.json", 109e9, 17e9, 0.02, 0.02),
        # Z.ai GLM-4.5 release: 355B total / 32B active (GLM-4.7 keeps the architecture); the
        # abridged config lacks biases/qk-norm/MTP, hence the looser tolerance.
        ("glm-4.7.json", 355e9, 32e9, 0.01, 0.06),
        # Z.ai GLM-5 release (2026-02): 744B total / 40B active (MLA + DSA attention).
        ("glm-5.json", 744e9, 40e9, 0.01, 0.04),
    ],
)
def test_other_families_match_published_totals(file, total, active, rel_total, rel_active):
    pc = tm.param_counts(tm.model_from_config_file(DATA / file))
    assert pc.total == pytest.approx(total, rel=rel_total)
    assert pc.active == pytest.approx(active, rel=rel_active)


def test_weight_bytes_native_dtypes(cat):
    """gpt-oss-120b ships MXFP4 experts and BF16 everything else (quantization_config
    modules_to_not_convert); OpenAI's model card: the checkpoint is ~60.8 GiB (65.3 GB). 3 %."""
    m = cat.model("gpt-oss-120b")
    assert tm.weight_bytes(m) == pytest.approx(65.3e9, rel=0.03)
    # an explicit dtype applies to every parameter: the lecture's N_total x bytes/weight
    assert tm.weight_bytes(m, "fp8") == tm.param_counts(m).total


def test_totals_only_model(cat):
    m = cat.model("lecture-moe-700b")
    pc = tm.param_counts(m)
    assert (pc.total, pc.active) == (700_000_000_000, 37_000_000_000)
    assert pc.embedding is None and set(pc.parts()) == set(PARTS)
    assert tm.weight_bytes(m) == 350e9  # fp4 = half a byte


# Gemma 4 text models, exact (tolerance 0) against Hugging Face transformers 5.25.0 (torch 2.13.0+cpu):
#   cfg = Gemma4TextConfig(**text_config_without_model_type)
#   with torch.device("meta"): model = AutoModelForCausalLM.from_config(cfg)   # Gemma4ForCausalLM
#   total = sum(p.numel() for p in model.parameters())
#   active = total - (experts) + experts * top_k_experts // num_experts
# (layer_scalar and the embedding scales are buffers, not parameters.) The files, in tests/data:
#   defaults: Gemma4TextConfig's defaults (per-layer input embeddings of 256, global_head_dim 512);
#   e2b-like: 35 layers, 20 KV-shared layers with a double-wide MLP, PLE 256, 1 KV head;
#   26b-a4b-like: enable_moe_block (128 experts, top 8, beside a dense MLP), attention_k_eq_v,
#     2 global KV heads of 512 (Google publishes 25.2B total / 3.8B active for gemma-4-26B-A4B);
#   26b-a4b-saved: the same config as transformers 5.25 saves it (per_layer_config, no global_*);
#   31b-like: dense with attention_k_eq_v and 4 global KV heads (Google: 30.7B for gemma-4-31B);
#   global-kv-ignored: num_global_key_value_heads without attention_k_eq_v (ignored by
#     transformers), attention_bias, an untied head and a smaller PLE vocabulary.
GEMMA4_EXACT = [
    ("gemma4-defaults.json", 5_077_177_856, 5_077_177_856, 2_013_265_920),
    ("gemma4-e2b-like.json", 4_628_569_344, 4_628_569_344, 2_348_810_240),
    ("gemma4-26b-a4b-like.json", 25_233_141_760, 3_822_530_560, 0),
    ("gemma4-26b-a4b-saved.json", 25_233_141_760, 3_822_530_560, 0),
    ("gemma4-31b-like.json", 30_697_345_280, 30_697_345_280, 0),
    ("gemma4-global-kv-ignored.json", 287_613_504, 287_613_504, 24_576_000),
]


@pytest.mark.parametrize("file, total, active, ple_table", GEMMA4_EXACT)
def test_gemma4_exact_against_transformers(file, total, active, ple_table):
    """See GEMMA4_EXACT: tokenmath's counts equal transformers 5.25.0's on the meta device, exactly."""
    m = tm.model_from_config_file(DATA / file)
    pc = tm.param_counts(m)
    assert (pc.total, pc.active, pc.per_layer_embedding) == (total, active, ple_table)
    assert sum(pc.parts().values()) == pc.total


def test_gemma4_26b_parts_against_transformers():
    """transformers 5.25.0, gemma4-26b-a4b-like on the meta device, parameters summed by module
    name: attention projections 1,110,179,840 + q/k norms 17,920; mlp 535,265,280 (the dense MLP
    beside the experts, so the step model sees it); experts 22,837,985,280; router 10,901,760
    (proj + scale + per_expert_scale); norms 594,176 (7 per layer + final); embedding 738,197,504."""
    pc = tm.param_counts(tm.model_from_config_file(DATA / "gemma4-26b-a4b-like.json"))
    assert pc.attention == 1_110_179_840 + 17_920
    assert (pc.mlp, pc.routed_experts, pc.router, pc.norms) == (535_265_280, 22_837_985_280, 10_901_760, 594_176)
    assert pc.embedding == 738_197_504 and pc.lm_head == 0


def test_gemma4_ple_table_is_a_lookup():
    """The per-layer input embedding table is read a row per token, like the token embedding: it
    is stored (weight_bytes) but neither multiplied (matmul params) nor streamed per pass."""
    m = tm.model_from_config_file(DATA / "gemma4-e2b-like.json")
    pc = tm.param_counts(m)
    from tokenmath.params import matmul_params_per_token

    assert matmul_params_per_token(m) == pc.active - pc.per_layer_embedding  # tied: the token table stays in
    assert tm.weight_bytes(m) == 2 * pc.total
    assert tm.weights_read_bytes(m) == 2 * (pc.total - pc.per_layer_embedding)

"""InternLM2 model: published shapes, packed-document attention, HF folders and the LLaMA export."""

import json

import pytest
import torch

from refinery.trainer.config import preset
from refinery.trainer.hf import export_llama, load_hf, save_hf, split_wqkv
from refinery.trainer.model import InternLM2ForCausalLM


def tiny(**kw):
    torch.manual_seed(0)
    return InternLM2ForCausalLM(preset("tiny", vocab_size=211, **kw)).eval()


@pytest.mark.parametrize("name,billions", [("1.8B", 1.89), ("7B", 7.74), ("20B", 19.86)])
def test_published_sizes(name, billions):
    assert round(preset(name).num_params() / 1e9, 2) == billions


def test_official_parameter_names():
    names = {n for n, _ in tiny().named_parameters()}
    for expect in (
        "model.tok_embeddings.weight",
        "model.layers.0.attention.wqkv.weight",
        "model.layers.0.attention.wo.weight",
        "model.layers.1.feed_forward.w1.weight",
        "model.layers.1.feed_forward.w2.weight",
        "model.layers.1.feed_forward.w3.weight",
        "model.layers.0.attention_norm.weight",
        "model.layers.0.ffn_norm.weight",
        "model.norm.weight",
        "output.weight",
    ):
        assert expect in names
    # 4 query heads in 2 groups, each group: 2 query heads + 1 key + 1 value, head_dim 16.
    assert tiny().model.layers[0].attention.wqkv.weight.shape == ((4 + 2 * 2) * 16, 64)


def test_wqkv_grouped_layout():
    cfg = preset("tiny", vocab_size=10)
    rows = torch.arange((4 + 2 * 2) * 16).float()[:, None]
    q, k, v = split_wqkv(rows, cfg)
    # group 0 = rows 0..63: q heads 0,1 (rows 0..31), key (32..47), value (48..63); group 1 follows.
    assert q[:32, 0].tolist() == list(range(32)) and q[32:, 0].tolist() == list(range(64, 96))
    assert k[:, 0].tolist() == list(range(32, 48)) + list(range(96, 112))
    assert v[:, 0].tolist() == list(range(48, 64)) + list(range(112, 128))


def test_packed_documents_do_not_see_each_other():
    model = tiny()
    a, b = torch.randint(0, 211, (1, 7)), torch.randint(0, 211, (1, 9))
    packed = torch.cat([a, b], dim=1)
    position_ids = torch.tensor([list(range(7)) + list(range(9))])
    with torch.no_grad():
        out = model(packed, position_ids)
        torch.testing.assert_close(out[:, :7], model(a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[:, 7:], model(b), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(packed)[:, 7:], model(b), atol=1e-3)


def test_hf_folder_roundtrip(tmp_path):
    model = tiny()
    save_hf(model, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "internlm2" and cfg["architectures"] == ["InternLM2ForCausalLM"]
    assert cfg["num_key_value_heads"] == 2 and cfg["rope_theta"] == 1e6
    back = load_hf(tmp_path / "hf")
    ids = torch.randint(0, 211, (2, 12))
    with torch.no_grad():
        assert torch.equal(model(ids), back(ids))


@pytest.mark.parametrize("bias,seq_len", [(False, 24), (True, 24), (False, 40)])
def test_llama_export_matches_transformers(tmp_path, bias, seq_len):
    """Our logits equal LlamaForCausalLM's on the converted weights (seq 40 > 32 positions: dynamic NTK)."""
    llama_cls = pytest.importorskip("transformers").LlamaForCausalLM
    model = tiny(bias=bias, max_position_embeddings=32)
    if bias:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.attention.wqkv.bias.normal_(std=0.5)
                layer.attention.wo.bias.normal_(std=0.5)
    export_llama(model, tmp_path / "llama")
    llama = llama_cls.from_pretrained(tmp_path / "llama", torch_dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.randint(0, 211, (2, seq_len))
    with torch.no_grad():
        ours = model(ids)
        theirs = llama(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_export_from_folder_equals_export_from_model(tmp_path):
    from safetensors.torch import load_file

    model = tiny()
    export_llama(model, tmp_path / "a")
    export_llama(save_hf(model, tmp_path / "hf"), tmp_path / "b")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_chunked_loss_equals_the_whole_and_its_gradients():
    """The loss over chunks of positions (logits recomputed in backward) equals the loss over
    all logits at once, and so do the gradients; ignored labels are left out of both."""
    torch.manual_seed(0)
    model = InternLM2ForCausalLM(preset("tiny", vocab_size=512))
    ids = torch.randint(0, 512, (3, 40))
    labels = torch.randint(0, 512, (3, 40))
    labels[0, :7] = -100
    grads = []
    losses = []
    for chunk in (0, 16, 7):
        model.zero_grad()
        loss = model(ids, labels=labels, loss_chunk_tokens=chunk)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6) and losses[2] == pytest.approx(losses[0], rel=1e-6)
    for g in grads[1:]:
        assert torch.allclose(g, grads[0], rtol=1e-5, atol=1e-7)
    logits = model(ids)
    assert logits.shape == (3, 40, 512)


def test_batch_numbers_must_divide(tmp_path):
    from refinery.pipeline.config import ConfigError
    from refinery.trainer.config import load_train_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {preset: tiny}\nmicro_batch_size: 3\nglobal_batch_size: 8\n")
    with pytest.raises(ConfigError, match="global_batch_size 8 is not a multiple of micro_batch_size 3"):
        load_train_config(bad)
    bad.write_text("model: {preset: tiny}\nmicro_batch_size: 2\nglobal_batch_size: 8\ngrad_accum: 4\n")
    with pytest.raises(ConfigError, match="grad_accum"):
        load_train_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("model: {preset: tiny}\nmicro_batch_size: 2\nglobal_batch_size: 12\n")
    cfg = load_train_config(good)
    assert [cfg.accumulation(r) for r in (1, 2, 3, 6)] == [6, 3, 2, 1]
    with pytest.raises(ValueError, match="micro_batch_size 2 x 4 ranks"):
        cfg.accumulation(4)


def test_flops_and_peaks():
    from refinery.trainer.flops import PEAK_BF16, flops_per_token

    cfg = preset("7B")
    per_token = flops_per_token(cfg, 4096)
    assert 6 * 6.5e9 < per_token < 6 * 7.5e9 + 12 * 32 * 4096 * 4096  # about 6 x 7B
    names = [name for name, _ in PEAK_BF16]
    for specific, general in (("H100 PCIe", "H100"), ("A100", "A10"), ("L40S", "L40"), ("L40", "L4")):
        assert names.index(specific) < names.index(general)


def test_document_attention_equals_the_dense_mask_reference(monkeypatch):
    import random

    from attention_reference import dense_document_attention

    from refinery.trainer import model as model_module

    torch.manual_seed(1)
    rng = random.Random(1)
    model = InternLM2ForCausalLM(preset("tiny", vocab_size=300))
    t = 96
    positions = []
    for _ in range(3):
        row = []
        while len(row) < t:
            row += list(range(rng.randint(1, 40)))
        positions.append(row[:t])
    position_ids = torch.tensor(positions)
    ids = torch.randint(0, 300, (3, t))
    labels = torch.randint(0, 300, (3, t))
    ours = model(ids, position_ids)
    loss = model(ids, position_ids, labels=labels)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monkeypatch.setattr(model_module, "document_attention", dense_document_attention)
    reference = model(ids, position_ids)
    model(ids, position_ids, labels=labels).backward()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_keeps_losses_and_gradients(mode):
    from refinery.trainer.parallel import checkpoint_layers

    torch.manual_seed(2)
    plain = InternLM2ForCausalLM(preset("tiny", vocab_size=256, num_hidden_layers=3))
    wrapped = InternLM2ForCausalLM(preset("tiny", vocab_size=256, num_hidden_layers=3))
    wrapped.load_state_dict(plain.state_dict())
    checkpoint_layers(wrapped, mode)
    wrapped_layers = [type(layer).__name__ for layer in wrapped.model.layers]
    assert wrapped_layers.count("_Checkpointed") == (3 if mode == "full" else 2)
    ids = torch.randint(0, 256, (2, 24))
    losses = []
    for model in (plain, wrapped):
        loss = model(ids, labels=ids, loss_chunk_tokens=16)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (name, a), b in zip(plain.named_parameters(), wrapped.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-8, msg=name)

"""Tests of vaegen_utils.ensemble: each stacked member computes exactly what its standalone MLPVAE does."""

from __future__ import annotations

import json

import pytest
import torch

from vaegen_utils import ensemble as ensemble_module
from vaegen_utils import models
from vaegen_utils.ensemble import EnsembleMLPVAE
from vaegen_utils.estimators import gaussian_kl_to_standard_normal
from vaegen_utils.models import MLPVAEConfig, build_model

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
NUM_MEMBERS = 3

CONFIGS = {
    "1-layer bernoulli softplus": MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=4, hidden_sizes=(32,)),
    "3-layer bernoulli exp": MLPVAEConfig(data_shape=(3, 8, 8), latent_dim=5, hidden_sizes=(48, 32, 24), encoder_std="exp"),
    "1-layer gaussian": MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=4, hidden_sizes=(32,),
                                     likelihood="fixed_variance_gaussian", likelihood_options={"sigma": 0.3}),
    "3-layer discretized logistic tanh": MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=3, hidden_sizes=(16, 16, 16),
                                                      likelihood="discretized_logistic", activation="tanh"),
}


def make_data(config: MLPVAEConfig, shape, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if config.likelihood == "bernoulli":
        return torch.rand(shape, generator=generator).round()
    return torch.randint(0, 256, shape, generator=generator).float() / 255.0


def members_and_ensemble(config: MLPVAEConfig, num_members: int = NUM_MEMBERS):
    members = [build_model(config, seed=10 + index) for index in range(num_members)]
    return members, EnsembleMLPVAE.from_members(members)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_members_match_standalone_models(name):
    config = CONFIGS[name]
    members, ensemble = members_and_ensemble(config)
    batch = 5
    shared_x = make_data(config, (batch, *config.data_shape), seed=0)
    per_member_x = make_data(config, (NUM_MEMBERS, batch, *config.data_shape), seed=1)

    for x, member_x in [(shared_x, lambda i: shared_x), (per_member_x, lambda i: per_member_x[i])]:
        mean, log_std = ensemble.encode(x)
        assert mean.shape == log_std.shape == (NUM_MEMBERS, batch, config.latent_dim)
        z = torch.randn(2, NUM_MEMBERS, batch, config.latent_dim, generator=torch.Generator().manual_seed(2))
        params = ensemble.decode(z)
        assert params.shape == (2, NUM_MEMBERS, batch, *ensemble.param_shape)
        log_likelihood = ensemble.log_likelihood(x, z)
        assert log_likelihood.shape == (2, NUM_MEMBERS, batch)
        reconstruction = ensemble.reconstruct(x)
        for index, member in enumerate(members):
            expected_mean, expected_log_std = member.encode(member_x(index))
            torch.testing.assert_close(mean[index], expected_mean, **TOLERANCE)
            torch.testing.assert_close(log_std[index], expected_log_std, **TOLERANCE)
            torch.testing.assert_close(params[:, index], member.decode(z[:, index]), **TOLERANCE)
            torch.testing.assert_close(log_likelihood[:, index], member.log_likelihood(member_x(index), z[:, index]), **TOLERANCE)
            torch.testing.assert_close(reconstruction[index], member.reconstruct(member_x(index)), **TOLERANCE)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_paper_c_mlp_members_match_standalone_models(num_layers):
    """Paper C's networks at full width (3072 -> 512 (x1 or x3) -> 10)."""
    config = models.bozkurt2021_mlp(num_layers)
    members, ensemble = members_and_ensemble(config, num_members=2)
    x = make_data(config, (4, *config.data_shape), seed=0)
    mean, log_std = ensemble.encode(x)
    z = mean + torch.exp(log_std) * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    log_likelihood = ensemble.log_likelihood(x, z.unsqueeze(0))
    for index, member in enumerate(members):
        expected_mean, expected_log_std = member.encode(x)
        torch.testing.assert_close(mean[index], expected_mean, **TOLERANCE)
        torch.testing.assert_close(log_std[index], expected_log_std, **TOLERANCE)
        torch.testing.assert_close(log_likelihood[0, index], member.log_likelihood(x, z[index].unsqueeze(0))[0], **TOLERANCE)


def test_decode_without_and_with_several_leading_dims():
    config = CONFIGS["3-layer bernoulli exp"]
    members, ensemble = members_and_ensemble(config)
    z = torch.randn(2, 3, NUM_MEMBERS, 4, config.latent_dim, generator=torch.Generator().manual_seed(0))
    params = ensemble.decode(z)
    assert params.shape == (2, 3, NUM_MEMBERS, 4, *config.data_shape)
    plain = ensemble.decode(z[1, 2])  # (M, B, Z)
    torch.testing.assert_close(plain, params[1, 2], **TOLERANCE)
    for index, member in enumerate(members):
        torch.testing.assert_close(params[:, :, index], member.decode(z[:, :, index]), **TOLERANCE)


@pytest.mark.parametrize("name", ["1-layer bernoulli softplus", "3-layer discretized logistic tanh", "1-layer gaussian"])
@pytest.mark.parametrize("shared_batch", [True, False])
def test_gradients_match_standalone_models(name, shared_batch):
    """Gradients of the summed member losses w.r.t. the stacked parameters equal each model's own gradients."""
    config = CONFIGS[name]
    members, ensemble = members_and_ensemble(config)
    batch = 6
    betas = torch.tensor([0.1, 1.0, 3.0])
    x = make_data(config, (batch, *config.data_shape) if shared_batch else (NUM_MEMBERS, batch, *config.data_shape), seed=3)
    noise = torch.randn(NUM_MEMBERS, batch, config.latent_dim, generator=torch.Generator().manual_seed(4))

    def loss_terms(model, data, eps, beta):
        mean, log_std = model.encode(data)
        z = mean + torch.exp(log_std) * eps
        distortion = -model.log_likelihood(data, z.unsqueeze(0)).squeeze(0)
        return (distortion + beta * gaussian_kl_to_standard_normal(mean, log_std)).mean(dim=-1)

    ensemble_loss = loss_terms(ensemble, x, noise, betas.unsqueeze(-1)).sum()
    ensemble_loss.backward()
    for index, member in enumerate(members):
        member_x = x if shared_batch else x[index]
        loss_terms(member, member_x, noise[index], float(betas[index])).backward()
        encoder_layers = [*member.encoder.hidden, member.encoder.head]
        decoder_layers = [*member.decoder.hidden, member.decoder.output]
        for stacked, layers in [(ensemble.encoder, encoder_layers), (ensemble.decoder, decoder_layers)]:
            for weight, bias, layer in zip(stacked.weights, stacked.biases, layers, strict=True):
                torch.testing.assert_close(weight.grad[index], layer.weight.grad.t(), rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(bias.grad[index, 0], layer.bias.grad, rtol=1e-4, atol=1e-5)


def test_one_adam_step_matches_standalone_adam():
    config = CONFIGS["1-layer bernoulli softplus"]
    members, ensemble = members_and_ensemble(config)
    x = make_data(config, (4, *config.data_shape), seed=5)
    z = torch.randn(1, NUM_MEMBERS, 4, config.latent_dim, generator=torch.Generator().manual_seed(6))
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=1e-2)
    (-ensemble.log_likelihood(x, z).mean(dim=-1).sum()).backward()
    optimizer.step()
    for index, member in enumerate(members):
        member_optimizer = torch.optim.Adam(member.parameters(), lr=1e-2)
        (-member.log_likelihood(x, z[:, index]).mean()).backward()
        member_optimizer.step()
        stepped = ensemble.member(index)
        for (name, expected), (_, actual) in zip(member.state_dict().items(), stepped.state_dict().items()):
            torch.testing.assert_close(actual, expected, **TOLERANCE, msg=name)


def test_member_extraction_round_trip_and_copies():
    config = CONFIGS["3-layer bernoulli exp"]
    members, ensemble = members_and_ensemble(config)
    for index, member in enumerate(ensemble.to_members()):
        assert isinstance(member, models.MLPVAE) and member.config == config
        for (name, a), (_, b) in zip(member.state_dict().items(), members[index].state_dict().items()):
            assert torch.equal(a, b), name
    extracted = ensemble.member(-1)
    with torch.no_grad():
        extracted.encoder.head.weight.add_(1.0)
        members[0].encoder.head.weight.add_(1.0)
    assert torch.equal(ensemble.member(2).encoder.head.weight, members[2].encoder.head.weight)
    assert not torch.equal(ensemble.member(0).encoder.head.weight, members[0].encoder.head.weight)
    rebuilt = EnsembleMLPVAE.from_members(ensemble.to_members())
    for (name, a), (_, b) in zip(rebuilt.state_dict().items(), ensemble.state_dict().items()):
        assert torch.equal(a, b), name
    assert ensemble.num_members == NUM_MEMBERS
    assert ensemble.num_parameters() == NUM_MEMBERS * members[0].num_parameters()


def test_stacked_layout_and_parameter_split():
    config = CONFIGS["3-layer bernoulli exp"]
    _, ensemble = members_and_ensemble(config)
    assert [tuple(w.shape) for w in ensemble.encoder.weights] == [(3, 192, 48), (3, 48, 32), (3, 32, 24), (3, 24, 10)]
    assert [tuple(b.shape) for b in ensemble.decoder.biases] == [(3, 1, 24), (3, 1, 32), (3, 1, 48), (3, 1, 192)]
    assert all(p.is_contiguous() for p in ensemble.parameters())
    encoder = {id(p) for p in ensemble.encoder_parameters()}
    decoder = {id(p) for p in ensemble.decoder_parameters()}
    assert encoder and decoder and not encoder & decoder
    assert encoder | decoder == {id(p) for p in ensemble.parameters()}


def test_build_with_seeds_matches_build_model():
    config = CONFIGS["1-layer gaussian"]
    state_before = torch.random.get_rng_state()
    ensemble = EnsembleMLPVAE.build(config, seeds=[3, 4])
    assert torch.equal(torch.random.get_rng_state(), state_before)
    for index, seed in enumerate([3, 4]):
        expected = build_model(config, seed=seed)
        for (name, a), (_, b) in zip(ensemble.member(index).state_dict().items(), expected.state_dict().items()):
            assert torch.equal(a, b), name


def test_sampling_shapes():
    config = CONFIGS["1-layer bernoulli softplus"]
    _, ensemble = members_and_ensemble(config)
    z, x = ensemble.sample_with_latents(7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (NUM_MEMBERS, 7, config.latent_dim) and x.shape == (NUM_MEMBERS, 7, *config.data_shape)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert ensemble.sample(2).shape == (NUM_MEMBERS, 2, *config.data_shape)


def test_save_load_round_trip(tmp_path):
    config = CONFIGS["3-layer discretized logistic tanh"]
    _, ensemble = members_and_ensemble(config)
    folder = ensemble_module.save(ensemble, tmp_path / "ensemble")
    payload = json.loads((folder / "config.json").read_text())
    assert payload["kind"] == "mlp_vae_ensemble" and payload["num_members"] == NUM_MEMBERS
    for loaded in (models.load(folder), ensemble_module.load(folder)):
        assert isinstance(loaded, EnsembleMLPVAE) and loaded.num_members == NUM_MEMBERS and loaded.config == config
        x = make_data(config, (4, *config.data_shape), seed=0)
        for a, b in zip(ensemble.encode(x), loaded.encode(x)):
            assert torch.equal(a, b)
    payload["num_members"] = NUM_MEMBERS + 1
    del payload["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="does not describe the weights"):
        models.load(folder)
    single = models.save(build_model(config, seed=0), tmp_path / "single")
    with pytest.raises(ValueError, match="not an EnsembleMLPVAE"):
        ensemble_module.load(single)


def test_errors():
    config = CONFIGS["1-layer bernoulli softplus"]
    members, ensemble = members_and_ensemble(config)
    with pytest.raises(ValueError, match="at least one"):
        EnsembleMLPVAE.from_members([])
    other = build_model(MLPVAEConfig(data_shape=(1, 8, 8), latent_dim=4, hidden_sizes=(16,)), seed=0)
    with pytest.raises(ValueError, match="share one MLPVAEConfig"):
        EnsembleMLPVAE.from_members([members[0], other])
    conv = build_model(models.ConvVAEConfig(data_shape=(1, 8, 8), channels=4), seed=0)
    with pytest.raises(ValueError, match="MLPVAE models only"):
        EnsembleMLPVAE.from_members([conv])
    with pytest.raises(ValueError, match=r"\(M=3, B, \.\.\.\)"):
        ensemble.encode(torch.zeros(2, 4, 1, 8, 8))
    with pytest.raises(ValueError, match="member dimension"):
        ensemble.decode(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="member dimension"):
        ensemble.decode(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="member index"):
        ensemble.member(3)
    with pytest.raises(ValueError, match="one seed per member"):
        EnsembleMLPVAE(config, 2, seeds=[1])


def test_tune_cpu_allocator_is_idempotent():
    first = ensemble_module.tune_cpu_allocator()
    assert isinstance(first, bool)
    assert ensemble_module.tune_cpu_allocator() == first

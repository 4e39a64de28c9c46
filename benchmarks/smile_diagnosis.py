"""Where does the default model lose the smile? Issue 15 asks to find that before fixing.

Each stage of the edit is read by the judge oracle (it took no part in training), on
held-out faces, for one attribute (default Smiling):

1. renderer: P(attr) of procedural renders with the attribute off and on (the judge's
   ceiling: how well a pixel-exact smile reads);
2. generator + W: renders of mapping(z) codes; the share the judge reads as having the
   attribute (is it represented in the generator's W?);
3. transformer in W: the attribute added (alpha +1) and removed (-1) on generator codes,
   no encoder involved (does the transformer move W the right way?);
4. encoder: procedural renders encoded and regenerated; the judge's agreement between
   each render and its reconstruction on the attribute (does the encoder keep it?);
5. the whole edit: add/remove on encoded renders, as `vrfam-rt eval` measures it.

    python3 -m vrfam_rt.benchmarks.smile_diagnosis --samples 512 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

EVAL_SEED = 20261126          # the same held-out seed as `vrfam-rt eval`


def diagnose(bundle, attr: str = "Smiling", samples: int = 512, batch: int = 64) -> dict:
    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.training.data import sample_w
    from vrfam_rt.synthetic.oracles import load_judge
    from vrfam_rt.synthetic.faces import ATTRIBUTES, render, sample_params

    judge = load_judge().eval()
    column = ATTRIBUTES.index(attr)
    k = bundle.attributes.index(attr)
    editing = "transformer" in bundle.modules      # an encoder run's bundle may have none
    runner = EagerBackend(bundle)
    size = bundle.config.encoder.input_size

    def p(images):
        with torch.no_grad():
            return torch.cat([torch.sigmoid(judge(images[i:i + batch])[:, column])
                              for i in range(0, len(images), batch)])

    def alphas(n, value):
        a = torch.zeros(n, len(bundle.attributes))
        a[:, k] = value
        return a

    def run(fn, *tensors):
        with torch.no_grad():
            return torch.cat([fn(*(t[i:i + batch] for t in tensors))
                              for i in range(0, len(tensors[0]), batch)])

    def success(codes, present):
        """Add (alpha +1) where the attribute is absent, remove (-1) where present."""
        def edited(alpha):
            return p(run(runner.generator, run(runner.transformer, codes,
                                                alphas(len(codes), alpha))))
        return {"add_success": (edited(1.0) > 0.5)[~present].float().mean().item(),
                "remove_success": (edited(-1.0) <= 0.5)[present].float().mean().item()}

    params = sample_params(samples, seed=EVAL_SEED)
    has = params.attribute(attr) > 0.5
    off, on = params.with_attributes(**{attr: 0.0}), params.with_attributes(**{attr: 1.0})
    out = {"attribute": attr, "samples": samples,
           "renderer": {"p_off": p(render(off, size)).mean().item(),
                        "p_on": p(render(on, size)).mean().item()}}

    gen = torch.Generator().manual_seed(EVAL_SEED)
    w = torch.cat([sample_w(bundle.generator, min(batch, samples - i), gen)
                   for i in range(0, samples, batch)])
    wplus = w[:, None].expand(-1, bundle.generator.n_latent, -1).contiguous()
    base = p(run(runner.generator, wplus)) > 0.5
    out["generator"] = {"share_read_with_attr": base.float().mean().item(),
                        "data_share_with_attr": has.float().mean().item()}
    if editing:
        out["transformer_in_w"] = success(wplus, base)

    faces = render(params, size)
    codes = run(runner.encoder, faces)
    recon = p(run(runner.generator, codes)) > 0.5
    truth = p(faces) > 0.5
    out["encoder"] = {"attr_kept": (recon == truth).float().mean().item(),
                      "kept_when_present": recon[truth].float().mean().item(),
                      "kept_when_absent": (~recon[~truth]).float().mean().item(),
                      "mse": (run(runner.generator, codes) - faces).pow(2).mean().item()}
    if editing:
        out["edit"] = success(codes, truth)
    return out


def main(argv=None) -> int:
    from vrfam_rt.fileio import write_json_atomic
    from vrfam_rt.suite import open_bundle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="bundle or suite [default: the shipped suite]")
    parser.add_argument("--attr", default="Smiling")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    report = diagnose(open_bundle(args.bundle), args.attr, args.samples)
    print(json.dumps(report, indent=2))
    if args.json:
        write_json_atomic(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

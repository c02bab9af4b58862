"""An attack kind added from one file of its own: registering its class is enough for the spec,
its ids, the command line and the eval JSON to know it (as docs/extending.md says)."""
import json
import subprocess
import sys
import textwrap

KIND = textwrap.dedent('''
    from freeadv.attacks import AttackKind, register_attack


    @register_attack
    class SignNoise(AttackKind):
        """x + eps * sign(uniform noise): a random corner of the eps-ball."""
        name = "signnoise"
        gradient = False
        uses_restarts = False

        def cost(self, spec):
            return 0

        def perturb(self, model, x, y, spec, generator):
            import torch
            corner = torch.rand(x.shape, generator=generator, device=x.device).round() * 2 - 1
            return (x + spec.eps_unit * corner).clamp(0, 1)
''')


def test_an_attack_kind_from_its_own_module_runs_from_the_command_line(trained_run, tmp_path):
    (tmp_path / "sign_noise.py").write_text(KIND)
    out = tmp_path / "eval.json"
    check = f"""
import sys
sys.path.insert(0, {str(tmp_path)!r})
import sign_noise
from freeadv.attacks import AttackSpec
from freeadv.cli import main
spec = AttackSpec.parse("signnoise1-eps8-step2-n16")
assert (spec.kind, spec.n, spec.id) == ("signnoise", 16, "signnoise1-eps8-step2-n16")
raise SystemExit(main(["attack", "--run", {str(trained_run)!r}, "--attack", "signnoise", "--steps", "1",
                       "--n", "16", "--device", "cpu", "--out", {str(out)!r}, "--no-progress"]))
"""
    subprocess.run([sys.executable, "-c", check], check=True)
    result = json.loads(out.read_text())
    assert result["attack"]["kind"] == "signnoise" and result["n"] == 16
    assert result["attack"]["gradient"] is False and 0 <= result["robust_acc"] <= result["clean_acc"]

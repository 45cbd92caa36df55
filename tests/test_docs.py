"""What the README and the docs promise a newcomer: the two opening commands, the science before the
cluster machinery, and statements that match the schema and the shipped protocols."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert blocks[0].strip() == "pip install torch==2.13.0 && pip install -e . && python -m bioplastic run protocols/evidence_accum.yaml"
    assert blocks[1].strip() == 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert README.index(blocks[1]) < README.index("\n## ")  # before the first section


def test_readme_puts_the_science_and_the_quick_start_before_the_cluster_machinery():
    heads = re.findall(r"(?m)^## (.+)$", README)
    science = ["Abrupt learning, as the default run shows it", "What the default run shows", "The report", "From Python"]
    machinery = ["Sweeps and executors", "GPU"]
    assert max(heads.index(h) for h in science) < min(heads.index(h) for h in machinery)
    first_machinery = README.index("## Sweeps and executors")
    for word in ("Dask", "Slurm", "TLS", ".lock"):
        assert README.index(word) > README.index("## From Python"), word
    assert README.index("claim 2") < first_machinery and README.index("TCR") < first_machinery


def test_docs_state_the_default_seeds_as_the_schema_and_the_shipped_protocol_have_them():
    from bioplastic.protocol.schema import ProtocolConfig

    text = (ROOT / "docs" / "report.md").read_text()
    shipped = yaml.safe_load((ROOT / "protocols" / "evidence_accum.yaml").read_text())["seeds"]
    schema = ProtocolConfig.model_fields["seeds"].default
    assert f"the default protocol's **{shipped} seeds**" in text
    assert f"**{schema} seeds can never** (the schema's default `seeds`" in text


def test_the_eta_f_statement_names_the_regime_of_each_number():
    text = (ROOT / "docs" / "tcr_plasticity.md").read_text()
    shipped = yaml.safe_load((ROOT / "protocols" / "evidence_accum.yaml").read_text())
    assert shipped["conditions"]["tcr_plasticity"]["tcr"]["plasticity"]["eta_F"] == 0.1
    para = text[text.index("**Choosing eta_F.**"):text.index("\n\n", text.index("**Choosing eta_F.**"))]
    assert "`eta_F = 0.1`" in para and "eta_F = 0.05 stopped learning" in para
    assert "g = 1.5, trained by Adam, with private noise sigma_h = 0.15" in para

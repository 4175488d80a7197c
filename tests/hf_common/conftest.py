collect_ignore_glob = ["test_*.py", "*/test_*.py"]  # vendored mixins, collected through tests/test_hf_common.py

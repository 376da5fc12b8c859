"""The kt-kernel test server's stand-in for the sglang package (test equipment; see ktserver.py)."""

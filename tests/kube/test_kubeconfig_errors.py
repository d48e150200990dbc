"""A kubeconfig that is not there is named in the error, in one line."""

from __future__ import annotations

from tests_support import Skupper, one_error_line


def test_kubeconfig_env_naming_a_missing_file_says_so(skupper: Skupper) -> None:
    skupper.env["KUBECONFIG"] = "/nonexistent/kubeconfig"
    done = skupper.fails("site", "status", "--platform", "kubernetes")
    line = one_error_line(done)
    assert "/nonexistent/kubeconfig" in line and "does not exist" in line
    assert "KUBECONFIG" in line

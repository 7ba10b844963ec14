"""servemark: deploy, benchmark, profile and plan LLM inference serving.

Library first::

    import servemark
    result = servemark.bench(servemark.BenchConfig(base_url="http://localhost:8000",
                                                   concurrency=[1, 8], num_requests=64))
    print(result.points[0].total_tokens_per_s)
"""

from servemark._version import __version__
from servemark.api import BenchResult, abench, bench
from servemark.spec import BenchConfig

__all__ = ["BenchConfig", "BenchResult", "__version__", "abench", "bench"]

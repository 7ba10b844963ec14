"""Example cluster specs shared by the golden-text and shellcheck tests (one per layout)."""

from __future__ import annotations

from typing import Any

SPECS: dict[str, dict[str, Any]] = {
    # 70B on one node at TP 4, benchmarked
    "single_tp4": {
        "name": "llama70b", "model": "meta-llama/Llama-3.1-70B-Instruct", "tensor_parallel_size": 4,
        "gpus_per_node": 4, "vllm_args": ["--max-model-len", "8192"],
        "scheduler": {"partition": "gpu", "account": "proj42", "time": "01:30:00",
                      "cpus_per_task": 32, "mem": "256G", "reservation": "llm-bench",
                      "qos": "high"},
        "environment": {"setup": ["module load cuda/12.4", 'source "$HOME/venvs/vllm/bin/activate"'],
                        "vars": {"HF_HOME": "/scratch/$USER/hf"}},
        "bench": {"args": ["--concurrency", "1,16", "--num-requests", "100"]},
    },
    # 405B over two 8-GPU nodes: TP 8 × PP 2 on Ray
    "multinode_tp8_pp2": {
        "name": "llama405b", "model": "/models/Llama-3.1-405B-Instruct",
        "served_model_name": "llama-405b", "tensor_parallel_size": 8, "pipeline_parallel_size": 2,
        "nodes": 2, "gpus_per_node": 8, "vllm_args": ["--max-model-len", "16384"],
        "scheduler": {"partition": "gpu", "time": "2-00:00:00", "exclusive": True, "mem": "0",
                      "constraint": "h100", "extra_directives": ["--mail-type=END"]},
        "environment": {"setup": ["conda activate vllm"],
                        "vars": {"HF_HOME": "/scratch/hf cache", "NCCL_SOCKET_IFNAME": "ib0"}},
        "ray": {"network_interface": "ib0", "wait_timeout_s": 900},
        "bench": {"args": {"concurrency": [1, 8, 32], "num_requests": 200, "input_len": 1024,
                           "output_len": 256, "stream": True}},
    },
    # four TP 4 replicas spread over two 8-GPU nodes, serve only
    "replicas4_2nodes": {
        "name": "replicas", "model": "Qwen/Qwen2.5-32B-Instruct", "tensor_parallel_size": 4,
        "nodes": 2, "gpus_per_node": 8, "replicas": 4, "port": 9000,
        "scheduler": {"time": "04:00:00"},
    },
    # CPU node (like the tests' tiny model), benchmark as a dict of options
    "cpu_tiny": {
        "name": "tiny", "model": "/models/tiny", "served_model_name": "tiny",
        "python": "/opt/venv/bin/python", "vllm_args": ["--enforce-eager"],
        "environment": {"vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "pass_env": []},
        "bench": {"args": {"concurrency": 2, "num_requests": 8, "ignore_eos": False}},
    },
    # Aurora-style: 2 nodes × 12 Intel GPU tiles, TP 12 × PP 2 on Ray, site environment
    "aurora_xpu": {
        "name": "aurora405b", "model": "/lus/flare/models/Llama-3.1-405B",
        "tensor_parallel_size": 12, "pipeline_parallel_size": 2, "nodes": 2, "gpus_per_node": 12,
        "vllm_args": ["--device", "xpu", "--max-model-len", "8192"],
        "scheduler": {"queue": "prod", "account": "MyProject", "time": "06:00:00",
                      "filesystems": "home:flare", "select_extra": "system=aurora"},
        "environment": {"setup": ["module load frameworks"],
                        "vars": {"ZE_FLAT_DEVICE_HIERARCHY": "FLAT",
                                 "HF_HOME": "/lus/flare/projects/MyProject/hf"}},
        # node IPs from the high-speed network's host names, as ALCF's own scripts take them
        "ray": {"hostname_suffix": ".hsn.cm.aurora.alcf.anl.gov"},
        "bench": {"args": {"concurrency": [1, 8], "num_requests": 64}},
    },
    # Polaris-style: 2 nodes × 4 A100, TP 4 × PP 2 on Ray, conda module, eagle filesystem
    "polaris_tp4_pp2": {
        "name": "polaris70b", "model": "/eagle/MyProject/models/Llama-3.1-70B-Instruct",
        "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "nodes": 2, "gpus_per_node": 4,
        "vllm_args": ["--max-model-len", "8192"],
        "scheduler": {"queue": "prod", "account": "MyProject", "time": "01:00:00",
                      "filesystems": "home:eagle", "place": "scatter", "exclusive": True,
                      "select_extra": "system=polaris"},
        "environment": {"setup": ["module use /soft/modulefiles", "module load conda",
                                  "conda activate base"],
                        "vars": {"HF_HOME": "/eagle/MyProject/hf"}},
        "ray": {"hostname_suffix": ".hsn.cm.polaris.alcf.anl.gov", "num_cpus": 32},
        "bench": {"args": {"concurrency": [1, 16], "num_requests": 64}},
    },
}

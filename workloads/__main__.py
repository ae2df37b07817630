"""Entry point of the agent bundle (``python agent-<hash>.pyz run``) and of ``python -m workloads``."""

from workloads.agent import leave, main

leave(main())

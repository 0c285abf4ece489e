"""Executors: where items run. The serial executor is the reference semantics."""

from stagewise.run.executors.base import Executor, get_executor
from stagewise.run.executors.serial import SerialExecutor
from stagewise.run.executors.threads import ThreadExecutor

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "get_executor"]

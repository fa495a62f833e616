from services.core.migrations import run_env

run_env()

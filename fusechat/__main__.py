from fusechat.cli import app

if __name__ == "__main__":  # not when a spawned child (vLLM's engine, multiprocessing) re-imports this module
    app()

from wework.persistence.migrations.common import run_env

run_env("message")

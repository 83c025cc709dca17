#!/usr/bin/env bash
# Make the compose stack's secrets once, in deploy/compose/secrets/ (git-ignored, mode 600):
# the PostgreSQL password, the database URL that holds it, Grafana's admin password, and an API
# keys file with one investigator key (printed once). Existing files are kept.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
if [[ ! -s secrets/postgres_password ]]; then
    random > secrets/postgres_password
fi
if [[ ! -s secrets/csae_database_url ]]; then
    printf 'postgresql+asyncpg://csae:%s@postgres:5432/csae\n' "$(cat secrets/postgres_password)" \
        > secrets/csae_database_url
fi
if [[ ! -s secrets/grafana_admin_password ]]; then
    random > secrets/grafana_admin_password
fi
if [[ ! -s secrets/csae_api_keys ]]; then
    # The image makes the key, so the file's format is the one the API reads.
    docker run --rm --user "$(id -u):$(id -g)" --read-only --tmpfs /tmp \
        -v "$PWD/secrets:/secrets" csae-referrals:local \
        keys create --role investigator --file /secrets/csae_api_keys
fi
# The containers run as uid 10001 and read the secrets as files; compose mounts them read-only.
chmod 644 secrets/*

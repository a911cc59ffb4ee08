"""The alerting lease: which alerting instance is active, until when, under which epoch.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Float(precision=53), nullable=False),
        sa.Column("renewed_at", sa.Float(precision=53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")

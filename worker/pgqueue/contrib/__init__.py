"""Adapters that enqueue in a framework's own transaction (SQLAlchemy, Django).

Each one only finds the psycopg connection under the framework's session and hands it to
``Client.enqueue(..., conn=)``: the message commits or rolls back with the rows written next to
it. Importing an adapter needs nothing but pgqueue; the framework is imported when first used.
"""

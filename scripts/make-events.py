#!/usr/bin/env python3
"""Writes the MSK event fixtures under events/ (run from the repository root).

Each fixture is an event exactly as an MSK event source mapping delivers it: records
grouped by "<topic>-<partition>", key/value base64, headers as signed byte arrays.
Values are DMS records in the shapes DMS writes (json-unformatted unless noted).
"""
import base64
import json

ARN = "arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5"
BOOTSTRAP = "b-1.cdc.kafka.eu-west-1.amazonaws.com:9098,b-2.cdc.kafka.eu-west-1.amazonaws.com:9098"
TS = 1732200000000


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def signed(text):
    return [b - 256 if b > 127 else b for b in text.encode()]


def meta(op, table, schema="public", txid=1141, record_type="data", extra=None):
    m = {
        "timestamp": "2024-11-21T14:40:00.123456Z",
        "record-type": record_type,
        "operation": op,
        "partition-key-type": "schema-table",
        "schema-name": schema,
        "table-name": table,
        "transaction-id": txid,
    }
    if extra:
        m.update(extra)
    return m


def record(topic, partition, offset, value, key, headers=(), pretty=False, ts_offset=0):
    text = json.dumps(value, indent=2) if pretty else json.dumps(value, separators=(",", ":"))
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": TS + ts_offset,
        "timestampType": "CREATE_TIME",
        "key": None if key is None else b64(key),
        "value": b64(text),
        "headers": [{k: signed(v)} for k, v in headers],
    }


def event(records, source="aws:kafka", arn=ARN):
    grouped = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(r)
    ev = {"eventSource": source}
    if arn:
        ev["eventSourceArn"] = arn
    ev["bootstrapServers"] = BOOTSTRAP
    ev["records"] = grouped
    return ev


TX = {"commit-timestamp": "2024-11-21T14:39:59.987654Z", "stream-position": "00000002/7C007178.3.00000002/7C007178",
      "transaction-record-id": 1, "prev-transaction-id": 1140, "prev-transaction-record-id": 1}

order = {"id": 46, "user_id": 7, "status": "PENDING", "amount": "19.90", "email": "kim@example.com", "note": "gift"}
paid = dict(order, status="PAID")
T = "dms.public.orders"

fixtures = {
    "insert.json": event([
        record(T, 0, 100, {"data": order, "metadata": meta("insert", "orders", extra=TX)}, "public.orders",
               headers=[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]),
        record(T, 0, 101, {"data": dict(order, id=47, user_id=8), "metadata": meta("insert", "orders", txid=1142)}, "public.orders"),
    ]),
    "update-before-image.json": event([
        record(T, 0, 200, {"data": paid, "before-image": order, "metadata": meta("update", "orders", txid=1150, extra=TX)}, "public.orders"),
        record(T, 0, 201, {"data": dict(paid, status="SHIPPED"), "before-image": paid, "metadata": meta("update", "orders", txid="0A.1F.2B")}, "public.orders"),
    ]),
    "delete.json": event([
        record(T, 0, 300, {"data": {"id": 46, "user_id": 7}, "metadata": meta("delete", "orders", txid=1160)}, "public.orders"),
    ]),
    # Full load: DMS keys by primary key and writes pretty-printed JSON with MessageFormat=json.
    "full-load.json": event([
        record(T, p, 10 + i, {"data": dict(order, id=i, user_id=100 + i), "metadata": meta("load", "orders", txid=None, extra={"partition-key-type": "primary-key"})},
               str(i), pretty=True)
        for i, p in [(1, 0), (2, 1), (3, 0), (4, 1)]
    ]),
    "ddl-control.json": event([
        record(T, 0, 400, {"control": {"table-def": {"columns": {"id": {"type": "INT32", "nullable": False},
                                                                 "user_id": {"type": "INT32", "nullable": False},
                                                                 "coupon": {"type": "STRING", "length": 20, "nullable": True}},
                                                     "primary-key": ["id"]}},
                          "metadata": meta("add-column", "orders", record_type="control", extra={"partition-key-type": "task-id"})},
               "public.orders"),
        record(T, 0, 401, {"data": dict(order, coupon="WELCOME"), "metadata": meta("insert", "orders", txid=1170)}, "public.orders"),
    ]),
    "multi-topic.json": event([
        record(T, 0, 500, {"data": order, "metadata": meta("insert", "orders")}, "public.orders",
               headers=[("origin", "seoul-ë"), ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]),
        record(T, 1, 70, {"data": dict(order, id=48, user_id=9), "metadata": meta("insert", "orders")}, "public.orders"),
        record("dms.public.users", 0, 30, {"data": {"id": 7, "name": "Kim", "email": "kim@example.com", "password_hash": "x1"}, "metadata": meta("update", "users")}, "public.users"),
        record("dms.public.users", 0, 31, {"data": {"id": 9, "name": "Lee", "email": "lee@example.com", "password_hash": "x2"}, "metadata": meta("insert", "users")}, "public.users"),
        record("dms.sales.invoices", 2, 9, {"data": {"invoice_no": "INV-9", "total": 120}, "metadata": meta("insert", "invoices", schema="sales")}, "sales.invoices"),
    ]),
    "self-managed.json": event([
        record("dms.public.users", 0, 40, {"data": {"id": 10, "name": "Park", "email": "park@example.com"}, "metadata": meta("insert", "users")}, "public.users"),
    ], source="SelfManagedKafka", arn=None),
}

# Values as DMS renders them: numbers as strings, timestamps without zone, LOBs as hex;
# an update whose mapped columns did not change; a dropped column.
fixtures["types-and-drift.json"] = event([
    record(T, 0, 600, {"data": {"id": 50, "user_id": "12", "status": "PAID", "amount": "1234.50", "paid_at": "2024-11-21 14:39:59.5",
                               "payload": "0x48656C6C6F", "internal": "x"},
                      "before-image": {"id": 50, "user_id": "12", "status": "PENDING", "amount": "1234.50", "paid_at": None, "payload": "0x48656C6C6F", "internal": "x"},
                      "metadata": meta("update", "orders", txid=1180)}, "public.orders"),
    record(T, 0, 601, {"data": {"id": 50, "user_id": "12", "status": "PAID", "amount": "1234.50", "paid_at": "2024-11-21 14:39:59.5",
                               "payload": "0x48656C6C6F", "internal": "y"},
                      "before-image": {"id": 50, "user_id": "12", "status": "PAID", "amount": "1234.50", "paid_at": "2024-11-21 14:39:59.5", "payload": "0x48656C6C6F", "internal": "x"},
                      "metadata": meta("update", "orders", txid=1181)}, "public.orders"),
    record(T, 0, 602, {"control": {"table-def": {"columns": {"id": {"type": "INT32", "nullable": False}, "status": {"type": "STRING", "length": 16, "nullable": True}},
                                                 "primary-key": ["id"]}},
                      "metadata": meta("drop-column", "orders", record_type="control", extra={"partition-key-type": "task-id"})}, "public.orders"),
    record(T, 0, 603, {"data": {"id": 51, "user_id": 13, "status": "NEW"}, "metadata": meta("insert", "orders", txid=1182)}, "public.orders"),
    record(T, 0, 604, {"data": {"id": 51, "user_id": 13}, "metadata": meta("delete", "orders", txid=1183)}, "public.orders"),
])

# The sample event `cdc-relay invoke` runs by default: a little of everything.
fixtures["sample.json"] = event([
    record(T, 0, 100, {"data": order, "metadata": meta("insert", "orders", extra=TX)}, "public.orders",
           headers=[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]),
    record(T, 0, 101, {"data": paid, "before-image": order, "metadata": meta("update", "orders", txid=1142)}, "public.orders"),
    record(T, 0, 102, {"data": {"id": 46, "user_id": 7}, "metadata": meta("delete", "orders", txid=1143)}, "public.orders"),
    record(T, 0, 103, {"control": {}, "metadata": meta("add-column", "orders", record_type="control")}, "public.orders"),
    record("dms.public.users", 0, 30, {"data": {"id": 7, "name": "Kim", "email": "kim@example.com", "password_hash": "x1"}, "metadata": meta("insert", "users")}, "public.users"),
])

# One update (status PENDING -> PAID) as each engine's before-image shows it.
full = dict(paid)
fixtures["before-images.json"] = event([
    # MySQL: every column.
    record(T, 0, 400, {"data": full, "before-image": order, "metadata": meta("update", "orders", txid=2001)}, "public.orders"),
    # PostgreSQL (default REPLICA IDENTITY): the key only.
    record(T, 0, 401, {"data": full, "before-image": {"id": 46}, "metadata": meta("update", "orders", txid=2002)}, "public.orders"),
    # Oracle (supplemental logging on the key): the key and the changed columns.
    record(T, 0, 402, {"data": full, "before-image": {"id": 46, "status": "PENDING"}, "metadata": meta("update", "orders", txid=2003)}, "public.orders"),
    # MySQL, an update that touched only an excluded column (note): not news under changed_only.
    record(T, 0, 403, {"data": dict(full, note="gift wrap"), "before-image": full, "metadata": meta("update", "orders", txid=2004)}, "public.orders"),
])

# IncludeNullAndEmpty=false leaves null columns out; with it on, they are present as null.
fixtures["absent-columns.json"] = event([
    record("dms.public.users", 0, 500, {"data": {"id": 21, "email": "lee@example.com"}, "metadata": meta("insert", "users", txid=2101)}, "public.users"),
    record("dms.public.users", 0, 501, {"data": {"id": 22, "name": None, "email": "park@example.com"}, "metadata": meta("insert", "users", txid=2102)}, "public.users"),
])

# An Oracle source: upper-case names, string transaction ids; and DMS's own tables.
H = "dms.hr"
fixtures["oracle-names.json"] = event([
    record(H, 0, 600, {"data": {"EMPLOYEE_ID": 101, "EMAIL": "SKING", "FIRST_NAME": "Steven", "SALARY": 24000,
                                "NOTES": "Leads the executive team and the planning of the yearly budget."},
                       "metadata": meta("insert", "EMPLOYEES", schema="HR", txid="0A001B00F4070000")}, "HR.EMPLOYEES"),
    record(H, 0, 601, {"data": {"EMPLOYEE_ID": 101, "EMAIL": "SKING", "FIRST_NAME": "Steven", "SALARY": 25000, "NOTES": "Leads the executive team."},
                       "before-image": {"EMPLOYEE_ID": 101, "SALARY": 24000},
                       "metadata": meta("update", "EMPLOYEES", schema="HR", txid="0A001B00F5070000")}, "HR.EMPLOYEES"),
    record(H, 0, 602, {"data": {"TASK_NAME": "cdc-task", "TABLE_OWNER": "HR", "TABLE_NAME": "EMPLOYEES", "ERROR": "ORA-01400"},
                       "metadata": meta("insert", "AWSDMS_APPLY_EXCEPTIONS", schema="ADMIN", txid="0A001B00F6070000")}, "ADMIN.AWSDMS_APPLY_EXCEPTIONS"),
    record(H, 0, 603, {"data": {"SERVER_NAME": "dms-1", "TASK_NAME": "cdc-task", "TASK_STATUS": "RUNNING"},
                       "metadata": meta("update", "awsdms_status", schema="ADMIN", txid="0A001B00F7070000")}, "ADMIN.awsdms_status"),
])

# IncludeTransactionDetails: one transaction of two changes, then the next one.
def tx(commit, position, record_id, prev, prev_record):
    return {"commit-timestamp": commit, "stream-position": position, "transaction-record-id": record_id,
            "prev-transaction-id": prev, "prev-transaction-record-id": prev_record}


new_order = {"id": 60, "user_id": 9, "status": "NEW", "amount": "5.00", "email": "cho@example.com", "note": None}
fixtures["transactions.json"] = event([
    record(T, 0, 700, {"data": new_order, "metadata": meta("insert", "orders", txid=3001, extra=tx(
        "2024-11-21T15:00:00.000000Z", "00000003/1A000010.1.00000003/1A000010", 1, 3000, 4))}, "public.orders"),
    record(T, 0, 701, {"data": dict(new_order, id=61, amount="7.50"), "metadata": meta("insert", "orders", txid=3001, extra=tx(
        "2024-11-21T15:00:00.000000Z", "00000003/1A000010.2.00000003/1A000010", 2, 3000, 4))}, "public.orders"),
    record(T, 0, 702, {"data": dict(new_order, status="PAID"), "metadata": meta("update", "orders", txid=3002, extra=tx(
        "2024-11-21T15:00:01.000000Z", "00000003/1A000020.1.00000003/1A000020", 1, 3001, 2))}, "public.orders"),
])

# A partner feed that wants only paid payments over 100, and deletes (routes.toml's filter).
P = "dms.public.payments"
payments = [
    ("insert", {"id": 1, "status": "PAID", "amount": "250.00", "memo": "Quarterly licence renewal for the analytics suite"}),
    ("insert", {"id": 2, "status": "PAID", "amount": "50.00", "memo": "Coffee"}),
    ("insert", {"id": 3, "status": "PENDING", "amount": "500.00", "memo": "Hardware"}),
    ("update", {"id": 4, "status": "PAID", "amount": "100.00", "memo": "Exactly the limit"}),
    ("update", {"id": 5, "status": "PAID", "amount": "100.000000000000000001", "memo": "Just over, past what a double can tell"}),
    ("delete", {"id": 3}),
]
fixtures["filtered.json"] = event([
    record(P, 0, 800 + i, {"data": data, "metadata": meta(op, "payments", txid=4001 + i)}, "public.payments")
    for i, (op, data) in enumerate(payments)
])

# A transactional outbox (Debezium's EventRouter layout): the application inserts each
# event in the transaction of its business change; DMS captures the inserts. An update
# and a delete of the outbox (cleaning it) publish nothing; a blank and a null payload.
OB = "dms.public.outbox"
outbox_rows = [
    ("load", {"id": "5d2c1b0e-33c4-4c41-9a0c-7f5e6a2d8b01", "aggregatetype": "order", "aggregateid": "45",
              "type": "OrderPlaced", "payload": '{"orderId":45,"total":"9.90"}'}),
    ("insert", {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "aggregatetype": "order", "aggregateid": "46",
                "type": "OrderPlaced",
                "payload": '{"orderId":46,"total":"19.90","items":[{"sku":"A-1","qty":2}],"big":123456789012345678901234567890}'}),
    ("insert", {"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "aggregatetype": "customer", "aggregateid": "7",
                "type": "CustomerRegistered", "payload": '{"customerId":7,"email":"kim@example.com"}'}),
    ("update", {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "aggregatetype": "order", "aggregateid": "46",
                "type": "OrderPlaced", "payload": '{"orderId":46}'}),
    ("delete", {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    ("insert", {"id": "e4eaaaf2-d142-11e1-b3e4-080027620cdd", "aggregatetype": "order", "aggregateid": "47",
                "type": "OrderCancelled", "payload": "  "}),
    ("insert", {"id": "a8098c1a-f86e-11da-bd1a-00112444be1e", "aggregatetype": "order", "aggregateid": "48",
                "type": "OrderArchived", "payload": None}),
    ("insert", {"id": "b1c2d3e4-0000-4000-8000-000000000009", "aggregatetype": "payment#card", "aggregateid": "9",
                "type": "PaymentTaken", "payload": '["not", "an", "object"]'}),
]
fixtures["outbox.json"] = event([
    record(OB, 0, 900 + i, {"data": data, "metadata": meta(op, "outbox", txid=5001 + i)}, "public.outbox")
    for i, (op, data) in enumerate(outbox_rows)
])

for name, ev in fixtures.items():
    with open(f"events/{name}", "w") as f:
        json.dump(ev, f, indent=2)
        f.write("\n")
print(f"wrote {len(fixtures)} events")

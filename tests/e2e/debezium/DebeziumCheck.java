// Reads cdc-relay's Debezium-envelope messages with Kafka Connect's own JsonConverter
// (schemas.enable=true) and unwraps them with Debezium's own ExtractNewRecordState, as a
// Kafka Connect sink behind that transform would. Input, one JSON object per line:
// {"topic", "key", "value"} (key and value: the message's text, or null). Output, one
// line each: {"ok": true, "key": ..., "value": ..., "dropped": ..., "row": ...}: the key
// and the whole value as Connect read them, whether the transform dropped the record,
// and the transform's output value, each written back by a schemaless JsonConverter; or
// {"ok": false, "error": "..."}.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.debezium.transforms.ExtractNewRecordState;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.sink.SinkRecord;

public class DebeziumCheck {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("outbox")) {
            outbox(args);
            return;
        }
        JsonConverter keyIn = new JsonConverter();
        keyIn.configure(Map.of("schemas.enable", "true"), true);
        JsonConverter valueIn = new JsonConverter();
        valueIn.configure(Map.of("schemas.enable", "true"), false);
        JsonConverter keyOut = new JsonConverter();
        keyOut.configure(Map.of("schemas.enable", "false"), true);
        JsonConverter valueOut = new JsonConverter();
        valueOut.configure(Map.of("schemas.enable", "false"), false);
        ExtractNewRecordState<SinkRecord> unwrap = new ExtractNewRecordState<>();
        unwrap.configure(Map.of(
                "delete.tombstone.handling.mode", "rewrite",
                "add.fields", "op,table,source.ts_ms"));
        ObjectMapper json = new ObjectMapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        long offset = 0;
        for (String line; (line = in.readLine()) != null; offset++) {
            ObjectNode out = json.createObjectNode();
            try {
                JsonNode message = json.readTree(line);
                String topic = message.get("topic").asText();
                byte[] key = bytes(message.get("key"));
                byte[] value = bytes(message.get("value"));
                SchemaAndValue k = keyIn.toConnectData(topic, key);
                SchemaAndValue v = valueIn.toConnectData(topic, value);
                SinkRecord record = new SinkRecord(topic, 0, k.schema(), k.value(), v.schema(), v.value(), offset);
                SinkRecord unwrapped = unwrap.apply(record);
                out.put("ok", true);
                out.set("key", json.readTree(keyOut.fromConnectData(topic, k.schema(), k.value())));
                // The whole envelope as Connect read it: a value it converted to something
                // else (JsonConverter does, silently) shows as a difference.
                byte[] read = valueOut.fromConnectData(topic, v.schema(), v.value());
                if (read == null) {
                    out.putNull("value");
                } else {
                    out.set("value", json.readTree(read));
                }
                out.put("dropped", unwrapped == null);
                if (unwrapped == null || unwrapped.value() == null) {
                    out.putNull("row");
                } else {
                    out.set("row", json.readTree(valueOut.fromConnectData(topic, unwrapped.valueSchema(), unwrapped.value())));
                }
            } catch (Exception e) {
                out.removeAll();
                out.put("ok", false);
                out.put("error", e.toString());
            }
            System.out.println(json.writeValueAsString(out));
        }
    }

    // Routes each message through Debezium's own outbox EventRouter, configured by the
    // key=value arguments after "outbox". Output, one line each: {"ok", "dropped",
    // "topic", "key", "headers": {name: text}, "value"}, the value written back by a
    // schemaless JsonConverter and headers by Kafka Connect's SimpleHeaderConverter.
    private static void outbox(String[] args) throws Exception {
        Map<String, String> config = new java.util.HashMap<>();
        for (int i = 1; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            config.put(pair[0], pair[1]);
        }
        // A source record, as in a Debezium connector (a sink record needs a partition).
        io.debezium.transforms.outbox.EventRouter<org.apache.kafka.connect.source.SourceRecord> router = new io.debezium.transforms.outbox.EventRouter<>();
        router.configure(config);
        JsonConverter keyIn = new JsonConverter();
        keyIn.configure(Map.of("schemas.enable", "true"), true);
        JsonConverter valueIn = new JsonConverter();
        valueIn.configure(Map.of("schemas.enable", "true"), false);
        JsonConverter valueOut = new JsonConverter();
        valueOut.configure(Map.of("schemas.enable", "false"), false);
        org.apache.kafka.connect.storage.SimpleHeaderConverter headerOut = new org.apache.kafka.connect.storage.SimpleHeaderConverter();
        headerOut.configure(Map.of());
        ObjectMapper json = new ObjectMapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        long offset = 0;
        for (String line; (line = in.readLine()) != null; offset++) {
            ObjectNode out = json.createObjectNode();
            try {
                JsonNode message = json.readTree(line);
                String topic = message.get("topic").asText();
                SchemaAndValue k = keyIn.toConnectData(topic, bytes(message.get("key")));
                SchemaAndValue v = valueIn.toConnectData(topic, bytes(message.get("value")));
                org.apache.kafka.connect.source.SourceRecord routed = router.apply(new org.apache.kafka.connect.source.SourceRecord(
                        Map.of(), Map.of("offset", offset), topic, null, k.schema(), k.value(), v.schema(), v.value()));
                out.put("ok", true);
                out.put("dropped", routed == null);
                if (routed != null) {
                    out.put("topic", routed.topic());
                    out.put("key", routed.key() == null ? null : String.valueOf(routed.key()));
                    ObjectNode headers = out.putObject("headers");
                    for (org.apache.kafka.connect.header.Header h : routed.headers()) {
                        byte[] text = headerOut.fromConnectHeader(routed.topic(), h.key(), h.schema(), h.value());
                        headers.put(h.key(), text == null ? null : new String(text, StandardCharsets.UTF_8));
                    }
                    byte[] value = routed.value() == null ? null : valueOut.fromConnectData(routed.topic(), routed.valueSchema(), routed.value());
                    if (value == null) {
                        out.putNull("value");
                    } else {
                        out.set("value", json.readTree(value));
                    }
                }
            } catch (Exception e) {
                out.removeAll();
                out.put("ok", false);
                out.put("error", e.toString());
            }
            System.out.println(json.writeValueAsString(out));
        }
    }

    private static byte[] bytes(JsonNode text) {
        return text == null || text.isNull() ? null : text.asText().getBytes(StandardCharsets.UTF_8);
    }
}

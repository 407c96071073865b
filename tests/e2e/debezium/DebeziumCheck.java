// Reads cdc-relay's Debezium-envelope messages with Kafka Connect's own JsonConverter
// (schemas.enable=true, key and value) and hands them to Debezium's own transforms.
// Input, one JSON object per line: {"topic", "key", "value"} (key and value: the
// message's text, or null). One output line per input line, or {"ok": false, "error"}.
//
// Without arguments: ExtractNewRecordState (delete.tombstone.handling.mode=rewrite,
// add.fields=op,table,source.ts_ms), as a Kafka Connect sink behind it would. Output:
// {"ok": true, "key", "value", "dropped", "row"}: the key and the whole value as Connect
// read them, whether the transform dropped the record, and its output value.
//
// With "outbox" and key=value arguments: Debezium's outbox EventRouter configured so.
// Output: {"ok": true, "dropped", "topic", "key", "headers": {name: text}, "value"}.
//
// Values are written back by a schemaless JsonConverter, headers by Kafka Connect's
// SimpleHeaderConverter.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.debezium.transforms.ExtractNewRecordState;
import io.debezium.transforms.outbox.EventRouter;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.storage.SimpleHeaderConverter;

public class DebeziumCheck {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final JsonConverter KEY_IN = converter(true, true);
    private static final JsonConverter VALUE_IN = converter(true, false);
    private static final JsonConverter KEY_OUT = converter(false, true);
    private static final JsonConverter VALUE_OUT = converter(false, false);

    /// What one message becomes, written into `out`.
    interface Check {
        void run(String topic, SchemaAndValue key, SchemaAndValue value, long offset, ObjectNode out) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("outbox")) {
            outbox(args);
        } else {
            unwrap();
        }
    }

    private static void unwrap() throws Exception {
        ExtractNewRecordState<SinkRecord> unwrap = new ExtractNewRecordState<>();
        unwrap.configure(Map.of(
                "delete.tombstone.handling.mode", "rewrite",
                "add.fields", "op,table,source.ts_ms"));
        each((topic, k, v, offset, out) -> {
            SinkRecord unwrapped = unwrap.apply(new SinkRecord(topic, 0, k.schema(), k.value(), v.schema(), v.value(), offset));
            out.set("key", JSON.readTree(KEY_OUT.fromConnectData(topic, k.schema(), k.value())));
            // The whole envelope as Connect read it: a value it converted to something
            // else (JsonConverter does, silently) shows as a difference.
            out.set("value", written(topic, v.schema(), v.value()));
            out.put("dropped", unwrapped == null);
            out.set("row", unwrapped == null ? null : written(topic, unwrapped.valueSchema(), unwrapped.value()));
        });
    }

    private static void outbox(String[] args) throws Exception {
        Map<String, String> config = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            config.put(pair[0], pair[1]);
        }
        // A source record, as in a Debezium connector (a sink record needs a partition).
        EventRouter<SourceRecord> router = new EventRouter<>();
        router.configure(config);
        SimpleHeaderConverter headerOut = new SimpleHeaderConverter();
        headerOut.configure(Map.of());
        each((topic, k, v, offset, out) -> {
            SourceRecord routed = router.apply(new SourceRecord(
                    Map.of(), Map.of("offset", offset), topic, null, k.schema(), k.value(), v.schema(), v.value()));
            out.put("dropped", routed == null);
            if (routed == null) {
                return;
            }
            out.put("topic", routed.topic());
            out.put("key", routed.key() == null ? null : String.valueOf(routed.key()));
            ObjectNode headers = out.putObject("headers");
            for (Header h : routed.headers()) {
                byte[] text = headerOut.fromConnectHeader(routed.topic(), h.key(), h.schema(), h.value());
                headers.put(h.key(), text == null ? null : new String(text, StandardCharsets.UTF_8));
            }
            out.set("value", written(routed.topic(), routed.valueSchema(), routed.value()));
        });
    }

    /// Reads stdin line by line, converts each message, and prints what `check` made of it.
    private static void each(Check check) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        long offset = 0;
        for (String line; (line = in.readLine()) != null; offset++) {
            ObjectNode out = JSON.createObjectNode();
            try {
                JsonNode message = JSON.readTree(line);
                String topic = message.get("topic").asText();
                SchemaAndValue k = KEY_IN.toConnectData(topic, bytes(message.get("key")));
                SchemaAndValue v = VALUE_IN.toConnectData(topic, bytes(message.get("value")));
                out.put("ok", true);
                check.run(topic, k, v, offset, out);
            } catch (Exception e) {
                out.removeAll();
                out.put("ok", false);
                out.put("error", e.toString());
            }
            System.out.println(JSON.writeValueAsString(out));
        }
    }

    private static JsonConverter converter(boolean schemas, boolean isKey) {
        JsonConverter converter = new JsonConverter();
        converter.configure(Map.of("schemas.enable", String.valueOf(schemas)), isKey);
        return converter;
    }

    /// A value as a schemaless JsonConverter writes it (null for none).
    private static JsonNode written(String topic, Schema schema, Object value) throws Exception {
        byte[] text = value == null ? null : VALUE_OUT.fromConnectData(topic, schema, value);
        return text == null ? null : JSON.readTree(text);
    }

    private static byte[] bytes(JsonNode text) {
        return text == null || text.isNull() ? null : text.asText().getBytes(StandardCharsets.UTF_8);
    }
}

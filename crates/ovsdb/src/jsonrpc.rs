//! JSON-RPC 1.0 framing as OVSDB uses it (RFC 7047 §4): JSON texts back to back on a stream,
//! with no delimiter. [`FrameSplitter`] finds where each text ends with one linear pass that
//! tracks nesting, strings and escapes, so a multi-megabyte initial monitor dump is scanned
//! once, not re-parsed on every read.

use serde_json::{Value, json};

/// Largest message accepted unless the client says otherwise: the controller's initial NB
/// dump at 100 000 Pods and 1 000 gateways is 13 MB (measured: a name per Logical_Switch_Port,
/// 1 000 Port_Groups of 100 ports), and a message costs several times its size to decode.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request, answered with the same id.
    Request {
        id: Value,
        method: String,
        /// The parameters (an array).
        params: Value,
    },
    /// A notification (a request with a null id), never answered.
    Notification {
        method: String,
        /// The parameters.
        params: Value,
    },
    /// The answer to a request.
    Response {
        /// The request's id.
        id: Value,
        /// The result, null on error.
        result: Value,
        /// The error, null on success.
        error: Value,
    },
}

/// The byte stream does not hold valid JSON-RPC.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message grew past the limit ([`MAX_MESSAGE`] unless configured).
    #[error("message longer than {limit} bytes (the client's limit)")]
    TooLong { limit: usize },
    /// Something other than an object or array where a message starts.
    #[error("unexpected byte {byte:#04x} between messages")]
    Garbage { byte: u8 },
    /// A complete text that is not valid JSON.
    #[error("invalid JSON: {reason}")]
    Json {
        /// The parser's message.
        reason: String,
    },
    /// Valid JSON that is not a JSON-RPC message.
    #[error("not a JSON-RPC message: {reason}")]
    NotRpc {
        /// What is missing.
        reason: &'static str,
    },
}

/// Splits a byte stream into JSON texts.
#[derive(Debug)]
pub struct FrameSplitter {
    /// Longest text accepted.
    limit: usize,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already scanned.
    scanned: usize,
    /// Where the current text starts, once its first byte was seen.
    start: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        FrameSplitter::with_limit(MAX_MESSAGE)
    }
}

impl FrameSplitter {
    /// A splitter refusing texts longer than `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        FrameSplitter {
            limit,
            buffer: Vec::new(),
            scanned: 0,
            start: None,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete text, if the buffer holds one.
    pub fn next_text(&mut self) -> Option<Result<Value, FrameError>> {
        while self.scanned < self.buffer.len() {
            let byte = self.buffer[self.scanned];
            let at = self.scanned;
            self.scanned += 1;
            if self.start.is_none() {
                match byte {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.start = Some(at);
                        self.depth = 1;
                        continue;
                    }
                    _ => {
                        self.reset(self.scanned);
                        return Some(Err(FrameError::Garbage { byte }));
                    }
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let start = self.start.unwrap_or(0);
                        if self.scanned - start > self.limit {
                            self.reset(self.scanned);
                            return Some(Err(FrameError::TooLong { limit: self.limit }));
                        }
                        let parsed = serde_json::from_slice(&self.buffer[start..self.scanned])
                            .map_err(|error| FrameError::Json {
                                reason: error.to_string(),
                            });
                        self.reset(self.scanned);
                        return Some(parsed);
                    }
                }
                _ => {}
            }
        }
        let pending = self.start.map_or(0, |start| self.buffer.len() - start);
        if pending > self.limit {
            self.reset(self.buffer.len());
            return Some(Err(FrameError::TooLong { limit: self.limit }));
        }
        None
    }

    /// Forgets everything up to `consumed` and starts looking for a new text.
    fn reset(&mut self, consumed: usize) {
        self.buffer.drain(..consumed);
        self.scanned = 0;
        self.start = None;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
    }
}

impl Message {
    /// Reads a message from a JSON text.
    pub fn from_value(value: Value) -> Result<Message, FrameError> {
        let Value::Object(mut object) = value else {
            return Err(FrameError::NotRpc {
                reason: "not an object",
            });
        };
        let id = object.remove("id").unwrap_or(Value::Null);
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err(FrameError::NotRpc {
                    reason: "method is not a string",
                });
            };
            let params = object.remove("params").unwrap_or(Value::Array(Vec::new()));
            return Ok(if id.is_null() {
                Message::Notification { method, params }
            } else {
                Message::Request { id, method, params }
            });
        }
        if !object.contains_key("result") && !object.contains_key("error") {
            return Err(FrameError::NotRpc {
                reason: "neither method nor result",
            });
        }
        Ok(Message::Response {
            id,
            result: object.remove("result").unwrap_or(Value::Null),
            error: object.remove("error").unwrap_or(Value::Null),
        })
    }

    /// The message as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            Message::Request { id, method, params } => {
                json!({"id": id, "method": method, "params": params})
            }
            Message::Notification { method, params } => {
                json!({"id": null, "method": method, "params": params})
            }
            Message::Response { id, result, error } => {
                json!({"id": id, "result": result, "error": error})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Result<Value, FrameError>> {
        let mut splitter = FrameSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk);
            while let Some(text) = splitter.next_text() {
                out.push(text);
            }
        }
        out
    }

    #[test]
    fn splits_back_to_back_texts_across_reads() {
        let stream = br#"{"id":1,"result":["a}\"{"],"error":null} [1,[2]]
{"method":"update","params":[null,{}],"id":null}"#;
        for cut in 0..stream.len() {
            let texts = split(&[&stream[..cut], &stream[cut..]]);
            assert_eq!(texts.len(), 3, "cut at {cut}");
            assert_eq!(
                texts[0],
                Ok(json!({"id": 1, "result": ["a}\"{"], "error": null}))
            );
            assert_eq!(texts[1], Ok(json!([1, [2]])));
        }
    }

    #[test]
    fn reports_garbage_and_bad_json_then_recovers() {
        let texts = split(&[b"x{\"a\":tru} {\"ok\":1}"]);
        assert_eq!(texts[0], Err(FrameError::Garbage { byte: b'x' }));
        assert!(matches!(texts[1], Err(FrameError::Json { .. })));
        assert_eq!(texts[2], Ok(json!({"ok": 1})));
    }

    #[test]
    fn classifies_messages() {
        let request = Message::from_value(json!({"id": "echo", "method": "echo", "params": []}));
        assert!(matches!(request, Ok(Message::Request { .. })));
        let notification =
            Message::from_value(json!({"id": null, "method": "update2", "params": [1, {}]}));
        assert!(matches!(notification, Ok(Message::Notification { .. })));
        let response = Message::from_value(json!({"id": 7, "result": [], "error": null}));
        assert!(matches!(response, Ok(Message::Response { .. })));
        assert!(Message::from_value(json!([1])).is_err());
        assert!(Message::from_value(json!({"id": 1})).is_err());
    }

    proptest! {
        #[test]
        fn any_json_survives_any_chunking(texts in proptest::collection::vec(any::<String>(), 1..4), cut in 0usize..400) {
            let values: Vec<Value> = texts.iter().map(|t| json!({"s": t, "n": [t, {"k": t}]})).collect();
            let stream: Vec<u8> = values.iter().flat_map(|v| serde_json::to_vec(v).unwrap_or_default()).collect();
            let cut = cut.min(stream.len());
            let got: Vec<Value> = split(&[&stream[..cut], &stream[cut..]]).into_iter().filter_map(Result::ok).collect();
            prop_assert_eq!(got, values);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = split(&[&bytes]);
        }
    }
}

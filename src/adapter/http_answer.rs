//! Reading an HTTP API's answer within a size bound, so that a broken or hostile server
//! cannot make the runtime buffer more than the bot accepts from the wire.

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The answer (announced or received) is larger than the bound.
    #[error("the answer is larger than {limit} bytes (max_frame_bytes)")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("cannot read the answer: {0}")]
    Read(#[from] reqwest::Error),
}

/// The body of `response`, at most `limit` bytes.
pub async fn read(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, AnswerError> {
    let too_large = AnswerError::TooLarge { limit };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(0, |n| n as usize));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

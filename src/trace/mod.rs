//! Header tracing: Received, dates, Authentication-Results (work in progress).

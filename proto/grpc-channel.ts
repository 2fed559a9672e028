/**
 * grpc-js channel options for clients that receive bulk data (image
 * downloads): the agent's image cache and the CLI. Shared so that both stay
 * what the controller's download path is measured with (bench:catalog).
 */

/**
 * The HTTP/2 flow-control window (stream and connection) the client
 * advertises. grpc-js otherwise keeps HTTP/2's 64 KiB, and Node's HTTP/2
 * grants it back every 32 KiB read: the controller then wakes for every
 * WINDOW_UPDATE and sends 32–64 KiB at a time, ~27,000 event-loop turns per
 * GiB (read, TLS record, write, epoll) where a wide window lets it send each
 * 1 MiB chunk in one write. Measured with the CLI's `image save`: 2.25
 * CPU-s per GiB on the controller's event loop at 64 KiB, 1.58 at 8 MiB
 * (medians; README, bench:catalog). The window bounds what the server may send unread, so it
 * is also the most a slow reader buffers per connection.
 */
export const BULK_FLOW_CONTROL_WINDOW = 8 * 1024 * 1024

/** The largest message a bulk client accepts (the controller sends 1 MiB chunks). */
export const BULK_MAX_RECEIVE_MESSAGE = 64 * 1024 * 1024

/** Channel options for a grpc-js client that downloads bulk data. */
export const bulkChannelOptions = {
  'grpc.max_receive_message_length': BULK_MAX_RECEIVE_MESSAGE,
  'grpc-node.flow_control_window': BULK_FLOW_CONTROL_WINDOW,
} as const

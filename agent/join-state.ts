/** What `strato-agent join` leaves in the agent's state directory, read back by loadAgentConfig. */
export interface JoinState {
  host: string
  /** The controller's gRPC URL (grpcs://…). */
  controllerAddress: string
  natsUrls: string[]
  /** File names inside the state directory. */
  natsCredsFile: string
  caFile: string
}

export const JOIN_STATE_FILE = 'join.json'

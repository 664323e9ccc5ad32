// GET /pushrules/ for a user who never changed theirs: Synapse answers with its base rules
// (synapse/push/baserules.py, the spec's predefined rules). A client needs a valid rule set before it syncs;
// nothing here evaluates them, so only the predefined rules a client reading messages meets are listed.
const rule = (rule_id: string, conditions: Record<string, unknown>[], actions: unknown[], enabled = true) =>
  ({ rule_id, default: true, enabled, conditions, actions })
const eventMatch = (key: string, pattern: string) => ({ kind: 'event_match', key, pattern })
const notify = ['notify', { set_tweak: 'sound', value: 'default' }]

export function defaultPushRules(): Record<string, unknown> {
  return {
    global: {
      override: [
        rule('.m.rule.master', [], [], false),
        rule('.m.rule.suppress_notices', [eventMatch('content.msgtype', 'm.notice')], []),
        rule('.m.rule.member_event', [eventMatch('type', 'm.room.member')], []),
      ],
      content: [],
      room: [],
      sender: [],
      underride: [
        rule('.m.rule.encrypted', [eventMatch('type', 'm.room.encrypted')], ['notify']),
        rule('.m.rule.message', [eventMatch('type', 'm.room.message')], ['notify']),
        rule('.m.rule.room_one_to_one', [{ kind: 'room_member_count', is: '2' }, eventMatch('type', 'm.room.message')], notify),
      ],
    },
  }
}

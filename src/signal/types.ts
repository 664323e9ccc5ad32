// The JSON signal-cli emits and answers with (signal-cli.md §4, §5). Schemas validate only what the bridge
// reads; unknown fields are stripped (0.14.x keeps adding optional fields), and every field the daemon may
// emit as null is nullish here (§4.1).
import { z } from 'zod'

const ts = z.number().int().nonnegative()
const str = z.string().nullish()

export const AttachmentJson = z.object({
  contentType: z.string().nullish(),
  filename: str,
  id: z.string().nullish(),
  size: z.number().nullish(),
  width: z.number().nullish(),
  height: z.number().nullish(),
  caption: str,
})
export type AttachmentJson = z.infer<typeof AttachmentJson>

const MentionJson = z.object({ uuid: z.string().nullish(), start: z.number().int(), length: z.number().int() })
const TextStyleJson = z.object({ style: z.string(), start: z.number().int(), length: z.number().int() })

export const GroupInfoJson = z.object({
  groupId: z.string(),
  groupName: str,
  revision: z.number().nullish(),
  type: z.string().nullish(),
})

export const DataMessageJson = z.object({
  timestamp: ts,
  message: str,
  /** The group's disappearing-message timer the message was sent with (0: none). */
  expiresInSeconds: z.number().nullish(),
  isExpirationUpdate: z.boolean().nullish(),
  /** A view-once photo or video: never copied (core/render.ts, viewOnceContent). */
  viewOnce: z.boolean().nullish(),
  mentions: z.array(MentionJson).nullish(),
  textStyles: z.array(TextStyleJson).nullish(),
  attachments: z.array(AttachmentJson).nullish(),
  sticker: z.object({ packId: z.string(), stickerId: z.number().int() }).nullish(),
  quote: z
    .object({ id: ts, author: str, authorUuid: str })
    .nullish(),
  reaction: z
    .object({
      emoji: z.string(),
      targetAuthor: str,
      targetAuthorUuid: str,
      targetSentTimestamp: ts,
      isRemove: z.boolean().nullish(),
    })
    .nullish(),
  remoteDelete: z.object({ timestamp: ts }).nullish(),
  groupInfo: GroupInfoJson.nullish(),
})
export type DataMessageJson = z.infer<typeof DataMessageJson>

export const EditMessageJson = z.object({ targetSentTimestamp: ts, dataMessage: DataMessageJson })
export type EditMessageJson = z.infer<typeof EditMessageJson>

// A sync transcript unwraps the dataMessage fields beside destination* (§4.9).
export const SentMessageJson = DataMessageJson.partial({ timestamp: true }).extend({
  destination: str,
  destinationUuid: str,
  editMessage: EditMessageJson.nullish(),
})

export const EnvelopeJson = z.object({
  source: str,
  sourceUuid: str,
  sourceName: str,
  sourceDevice: z.number().nullish(),
  timestamp: ts.nullish(),
  dataMessage: DataMessageJson.nullish(),
  editMessage: EditMessageJson.nullish(),
  syncMessage: z.object({ sentMessage: SentMessageJson.nullish() }).nullish(),
  typingMessage: z.unknown().optional(),
  receiptMessage: z.unknown().optional(),
})
export type EnvelopeJson = z.infer<typeof EnvelopeJson>

/** §4.8. Parsed apart from the envelope, so that an odd one never costs a message its envelope. */
export const TypingMessageJson = z.object({ action: z.string(), timestamp: ts.nullish(), groupId: z.string().nullish() })
export const ReceiptMessageJson = z.object({
  when: ts.nullish(),
  isDelivery: z.boolean().nullish(),
  isRead: z.boolean().nullish(),
  isViewed: z.boolean().nullish(),
  timestamps: z.array(ts),
})

/** The SSE `data` object (§3.2, §4.0). */
export const InnerJson = z.object({
  envelope: EnvelopeJson,
  account: z.string().nullish(),
  exception: z.object({ message: str, type: str }).nullish(),
})
export type InnerJson = z.infer<typeof InnerJson>

export type SendResultType =
  | 'SUCCESS'
  | 'NETWORK_FAILURE'
  | 'UNREGISTERED_FAILURE'
  | 'IDENTITY_FAILURE'
  | 'RATE_LIMIT_FAILURE'
  | 'INVALID_PRE_KEY_FAILURE'

export interface SendResultEntry {
  recipientAddress: { uuid: string | null; number: string | null; username?: string | null }
  groupId?: string
  type: SendResultType | string
  token?: string
  retryAfterSeconds?: number
}
export interface SendResultJson {
  timestamp: number
  results?: SendResultEntry[]
}

/** A `listGroups` entry. Members are objects since 0.13.x; the man page's plain strings are tolerated. */
export interface GroupJson {
  id: string
  name: string | null
  description?: string | null
  isMember: boolean
  isBlocked?: boolean
  members?: Array<{ number: string | null; uuid: string | null; isAdmin?: boolean } | string>
  /** Deprecated since 0.14 in favour of members[].isAdmin; still sent. */
  admins?: Array<{ number: string | null; uuid: string | null } | string>
  /** Who the group has banned. */
  banned?: Array<{ number: string | null; uuid: string | null } | string>
  groupInviteLink?: string | null
  /** Who may change the name, description, picture and timer: `EVERY_MEMBER` or `ONLY_ADMINS`. */
  permissionEditDetails?: string | null
  /** The disappearing-message timer in seconds (0: off). */
  messageExpirationTime?: number | null
}

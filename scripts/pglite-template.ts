// npm's postinstall (and the Docker build): makes the migrated embedded-database template that a first start
// loads instead of creating a database from nothing (src/db/template.ts). It never fails an install: without a
// template, a first start only takes its few seconds longer, and makes the template itself.
import { migrate } from '../src/db/migrate.ts'
import { pgliteTemplate } from '../src/db/pglite.ts'
import { templateStore } from '../src/db/template.ts'

const store = templateStore()
try {
  if (await store.load()) {
    console.log('relay-bridge: the embedded database template is up to date.')
  } else {
    const started = performance.now()
    await store.save(await pgliteTemplate(migrate))
    console.log(`relay-bridge: made the embedded database template in ${((performance.now() - started) / 1000).toFixed(1)} s (a first start loads it instead of creating a database).`)
  }
} catch (err) {
  console.log(`relay-bridge: could not make the embedded database template (${(err as Error).message}); a first start will make it instead.`)
}

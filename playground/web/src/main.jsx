import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import 'graphiql/style.css';
import './playground.css';

import { createMutuoFetcher, PLACEHOLDER_AUTHORIZATION } from './fetcher.js';
import { SharedHeaders } from './shared-headers.js';
import { tabs } from './examples.js';

const defaultHeaders = JSON.stringify({ Authorization: PLACEHOLDER_AUTHORIZATION }, null, 2);

function Playground() {
  return (
    <GraphiQL
      fetcher={createMutuoFetcher(window.location)}
      defaultTabs={tabs.map((t) => ({ ...t, headers: defaultHeaders }))}
      defaultHeaders={defaultHeaders}
      isHeadersEditorEnabled
      defaultEditorToolsVisibility="headers"
    >
      <GraphiQL.Logo>
        Mutuo
        <SharedHeaders />
      </GraphiQL.Logo>
    </GraphiQL>
  );
}

createRoot(document.getElementById('graphiql')).render(<Playground />);
